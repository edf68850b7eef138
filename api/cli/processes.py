"""The long-running processes: ``aimm serve`` (the HTTP API), ``projector``, ``relay``
and ``worker`` (training and prediction jobs, and the registrar and scorer process
managers). Each runs until SIGINT or SIGTERM; ``aimm dev`` supervises one of each."""

from __future__ import annotations

import asyncio
import signal

import click

from api.cli.common import database, load_settings, run_until_signalled


@click.command()
@click.option(
    "--projector/--no-projector", default=False, help="Also run the projector in-process."
)
def serve(projector: bool) -> None:
    """Run the HTTP API (uvicorn)."""
    import uvicorn

    from api.app import create_app
    from api.overload import deadline_protocol

    settings = load_settings()
    with database(settings) as url:
        app = create_app(settings, url, run_projector=projector)
        uvicorn.run(
            app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
            # a client has AIMM_REQUEST_TIMEOUT seconds to send a whole request (api/overload.py)
            http=deadline_protocol(settings.limits.request_timeout),
        )  # fmt: skip


@click.command("projector")
@click.option(
    "--batch-size", "batch_size", default=None, type=click.IntRange(min=1),
    help="Events per transaction (default: the engine's DEFAULT_BATCH).",
)  # fmt: skip
def run_projector(batch_size: int | None) -> None:
    """Keep the read models up to date with the event logs until stopped."""
    from projections.catalog import all_projections
    from projections.projector import DEFAULT_BATCH, Projector

    run_until_signalled(
        load_settings(),
        4,
        lambda pool, stop: Projector(pool, all_projections(), batch_size or DEFAULT_BATCH).run(
            stop
        ),
    )


@click.command("relay")
def run_relay() -> None:
    """Publish every event to Kafka (topics aimm.<context>) until stopped."""
    settings = load_settings()
    if settings.kafka_bootstrap is None:
        raise click.ClickException(
            "AIMM_KAFKA_BOOTSTRAP is not set: the relay needs a Kafka broker "
            "(AIMM_KAFKA_BOOTSTRAP=host:port[,host:port])"
        )
    bootstrap = settings.kafka_bootstrap
    from infrastructure.kafka_relay import KafkaRelay

    # One connection holds the leader lock and LISTENs; the others read and record.
    run_until_signalled(settings, 3, lambda pool, stop: KafkaRelay(pool, bootstrap).run(stop))


@click.command("worker")
@click.option(
    "--lease-seconds",
    default=15.0,
    type=click.FloatRange(min=1.0),
    envvar="AIMM_WORKER_LEASE_SECONDS",
    show_default=True,
    help="How long a claimed job stays leased without a heartbeat.",
)
@click.option(
    "--max-attempts",
    default=3,
    type=click.IntRange(min=1),
    envvar="AIMM_WORKER_MAX_ATTEMPTS",
    show_default=True,
    help="Attempts of a job before a lost lease fails it.",
)
@click.option(
    "--registrar/--no-registrar", default=True, show_default=True,
    help="Also run the process manager registering finished runs in the registry.",
)  # fmt: skip
@click.option(
    "--scorer/--no-scorer", default=True, show_default=True,
    help="Also run the process manager scoring predictions when their actuals arrive.",
)  # fmt: skip
def run_worker(lease_seconds: float, max_attempts: int, registrar: bool, scorer: bool) -> None:
    """Train models, make forecasts and run long prompt tests from the job queue until
    stopped; more workers work on more jobs at once."""
    import threading

    from application.assistant import AssistantApplication
    from application.prediction_worker import PredictionJobs
    from application.predictions import PredictionsApplication
    from application.prompt_test_worker import KIND as PROMPT_TEST
    from application.prompt_test_worker import PromptTestJobs
    from application.registrar import run_registrar
    from application.scorer import run_scorer
    from application.training import TrainingApplication
    from application.worker import TrainingWorker, tune_process, worker_name
    from infrastructure import jax_cache
    from infrastructure.postgres import eventsourcing_env
    from infrastructure.schema import migrate as run_migrate
    from infrastructure.wiring import (
        forecast_engine,
        jax_trainer,
        job_queue,
        llm_providers,
        pending_scores,
        postgres_ports,
    )

    settings = load_settings()
    tune_process()
    jax_cache.enable(settings.data_dir / "jax-cache")
    with database(settings) as url:
        asyncio.run(run_migrate(url))
        env = eventsourcing_env(url, pool_size=2, create_tables=False)  # migrate made them
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        threads = []
        if registrar:
            threads.append(
                threading.Thread(target=run_registrar, args=(env, stopping), name="registrar")
            )
        ports = postgres_ports()
        if scorer:
            threads.append(
                threading.Thread(
                    target=run_scorer, args=(env, ports, pending_scores, stopping), name="scorer"
                )
            )
        training = TrainingApplication(env, ports)
        predictions = PredictionsApplication(env, ports)
        # the LLM providers load nothing until a prompt test job needs a model
        assistant = AssistantApplication(env, postgres_ports(llm_providers(settings)))
        try:
            queue = job_queue(training, lease_seconds)
            name = worker_name()
            forecasts = PredictionJobs(
                predictions, training, queue, forecast_engine(), name=name,
                max_attempts=max_attempts,
            )  # fmt: skip
            prompt_tests = PromptTestJobs(assistant, queue, name=name, max_attempts=max_attempts)
            worker = TrainingWorker(
                training, queue, jax_trainer, name=name, max_attempts=max_attempts,
                handlers={"prediction": forecasts, PROMPT_TEST: prompt_tests},
            )  # fmt: skip
            for thread in threads:
                thread.start()
            click.echo(
                f"worker {worker.name} is waiting for training, prediction and prompt test jobs"
            )
            worker.run(stopping)
        finally:
            stopping.set()
            for thread in threads:
                thread.join()
            training.close()
            predictions.close()
            assistant.close()
