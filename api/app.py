"""The composition root of the HTTP service: ``create_app()`` wires everything."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from litestar import Litestar
from litestar.config.compression import CompressionConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig

from api.auth import authentication_middleware, correlation_middleware
from api.console import UNCOMPRESSED, console_routes
from api.contract import ClosedStructs, allow_middleware
from api.controllers.assistant_config import AssistantConfigController
from api.controllers.audit import AuditController
from api.controllers.experiments import ExperimentController
from api.controllers.health import HealthController, MetricsController
from api.controllers.market_data import MarketDataController
from api.controllers.me import MeController
from api.controllers.memory import MemoryController
from api.controllers.ml import DatasetController, JobController
from api.controllers.model_versions import ModelVersionController
from api.controllers.models import ModelController
from api.controllers.predictions import PredictionController
from api.controllers.prompt_suites import PromptSuiteController
from api.controllers.prompt_tests import PromptTestController
from api.controllers.prompts import PromptController
from api.errors import EXCEPTION_HANDLERS
from api.keycache import KeyCache
from api.overload import rate_limit
from api.read_cache import ReadCache
from application.contexts import Contexts
from infrastructure.postgres import create_pool, eventsourcing_env
from infrastructure.schema import migrate
from infrastructure.settings import Settings
from infrastructure.wiring import build_contexts, llm_providers
from projections.catalog import all_projections
from projections.positions import ProjectionWatcher
from projections.projector import Projector

log = logging.getLogger(__name__)

ROUTES: list[Any] = [
    AssistantConfigController,
    AuditController,
    HealthController,
    DatasetController,
    ExperimentController,
    JobController,
    MarketDataController,
    MeController,
    MemoryController,
    MetricsController,
    ModelController,
    ModelVersionController,
    PredictionController,
    PromptController,
    PromptTestController,
    PromptSuiteController,
]


def create_app(settings: Settings, database_url: str, *, run_projector: bool = False) -> Litestar:
    """The aimm API on ``database_url``; with ``run_projector`` it also keeps the read
    models up to date in-process (``aimm dev`` runs the projector as its own process)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await migrate(database_url)
        # requests wait for the database at most settings.database's timeouts, then 503
        pool = await create_pool(
            database_url, max_size=20, stateless=True, timeouts=settings.database
        )
        # migrate made every table: building the applications creates none (no race)
        env = eventsourcing_env(database_url, timeouts=settings.database, create_tables=False)
        # the LLM providers are built at the assistant's first need of them, not here
        contexts = await anyio.to_thread.run_sync(build_contexts, env, llm_providers(settings))
        app.state.pool = pool
        app.state.contexts = contexts
        app.state.key_cache = KeyCache(pool)
        await app.state.key_cache.start(settings.bootstrap_admin_key)
        app.state.read_cache = ReadCache()
        # one LISTEN connection per process wakes every read-your-writes wait and stream
        app.state.watcher = ProjectionWatcher(pool, database_url)
        await app.state.watcher.start()
        stop = asyncio.Event()
        task = None
        if run_projector:
            task = asyncio.create_task(Projector(pool, all_projections()).run(stop))
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, timeout=10)
            await app.state.watcher.stop()
            await app.state.key_cache.stop()
            await anyio.to_thread.run_sync(contexts.close)
            await pool.close()

    def provide_contexts(state: State) -> Contexts:
        contexts: Contexts = state.contexts
        return contexts

    prometheus = PrometheusConfig(app_name="aimm", prefix="aimm", group_path=True)
    limits = settings.limits
    app = Litestar(
        route_handlers=[*ROUTES, *console_routes(settings.console_dir)],
        lifespan=[lifespan],
        middleware=[
            correlation_middleware,
            allow_middleware,
            prometheus.middleware,
            authentication_middleware(),
            # after authentication: the limit is per API key (api/overload.py)
            *([rate_limit(limits.rate_limit).middleware] if limits.rate_limit else []),
        ],
        request_max_body_size=limits.max_body_bytes,  # 413 beyond (api/overload.py)
        exception_handlers=EXCEPTION_HANDLERS,
        # gzip for the console's files only (api/console.py): the API's answers and streams
        # are left as they are
        compression_config=CompressionConfig(
            backend="gzip", gzip_compress_level=6, exclude=list(UNCOMPRESSED)
        ),
        plugins=[ClosedStructs()],
        dependencies={"contexts": Provide(provide_contexts, sync_to_thread=False)},
        openapi_config=OpenAPIConfig(
            title="aimm",
            version="0.1.0",
            description="AI Model & Memory Management: event-sourced CQRS backend",
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
            components=Components(
                security_schemes={
                    "api_key": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="`Authorization: Bearer <api key>`; keys map to a "
                        "principal and roles (admin, operator, viewer, auditor, agent).",
                    )
                }
            ),
            security=[{"api_key": []}],
        ),
        debug=False,
    )
    app.state.settings_admin_key = settings.bootstrap_admin_key
    return app
