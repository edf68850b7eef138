"""Registry throughput through HTTP, each against a baseline measured in the same run.

Run: ``.venv/bin/python -m benchmarks.registry`` (``--help`` for the knobs).
PostgreSQL comes from ``AIMM_DATABASE_URL`` when set, else the embedded server is
started; the benchmark works in a fresh database that it drops at the end.

(a) ``GET /api/v1/ai/models`` (a page of 50 summaries, auth, projection query) served by
    aimm under uvicorn (its projector in a process of its own, as ``aimm dev`` runs it),
    against a bare Litestar endpoint under uvicorn returning the very same JSON bytes
    from memory; one httpx client, the same concurrency, the same run.
(b) deploy commands per second through ``POST /api/v1/ai/models/{id}/deploy`` against
    direct ``RegistryApplication.deploy`` calls, at the same concurrency, on models that
    each have 10 versions (every deploy is a real state change).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import UUID

import asyncpg
import httpx

from application.registry import RegistryApplication
from benchmarks.common import (
    aimm_services,
    free_port,
    fresh_database,
    postgres_server,
    service_env,
    start,
)
from domain.metadata import acting_as
from infrastructure import keys
from infrastructure.postgres import eventsourcing_env
from infrastructure.schema import migrate

GOAL_LIST = 0.5
GOAL_DEPLOY = 0.7
BARE_APP = """
from pathlib import Path
from litestar import Litestar, get, Response
BODY = Path({path!r}).read_bytes()
@get({route!r})
async def bare({params}) -> Response[bytes]:
    return Response(BODY, media_type="application/json")
app = Litestar([bare])
"""


def start_bare(
    route: str, params: str, body: bytes, env: dict[str, str], port: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """The baseline of an HTTP figure: a bare Litestar app under uvicorn answering GET
    ``route`` (handler parameters ``params``, e.g. ``"ticker: str"``) with ``body`` from
    memory. Returns the process and its port."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as file:
        file.write(body)
    app_dir = Path(tempfile.mkdtemp())
    (app_dir / "bare_app.py").write_text(
        BARE_APP.format(path=file.name, route=route, params=params)
    )
    port = port or free_port()
    proc = start(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port),
         "--log-level", "warning", "--app-dir", str(app_dir)],
        env,
        port,
    )  # fmt: skip
    return proc, port


def seed(app: RegistryApplication, models: int, versions: int) -> list[UUID]:
    ids: list[UUID] = []
    with acting_as("benchmark", "seed"):
        for i in range(models):
            result = app.register_model(
                name=f"model-{i:05d}",
                kind="ml" if i % 3 else "llm",
                task="forecast",
                description="benchmark model",
                owner="bench",
                tags=["bench"],
                respond=lambda m: (201, {"id": str(m.id)}),
            )
            model_id = UUID(result.value.body["id"])
            for v in range(versions):
                app.register_version(
                    model_id,
                    artifact=f"sha256:{i}-{v}",
                    framework="jax",
                    parameters={"lr": 0.001 * (v + 1)},
                    metrics={"accuracy": 0.5 + v / 100},
                    lineage={},
                    description="",
                    respond=lambda m, n: (201, {}),
                )
            app.deploy(model_id, versions, "production", "seed", respond=lambda m, d: (200, {}))
            ids.append(model_id)
    return ids


async def hammer(
    client: httpx.AsyncClient,
    requests: Sequence[tuple[str, str, Mapping[str, object] | None]],
    concurrency: int,
    headers: dict[str, str],
) -> float:
    """Requests per second over ``requests`` at ``concurrency``; every answer must be 2xx."""
    queue = list(reversed(requests))

    async def worker() -> None:
        while queue:
            method, path, body = queue.pop()
            response = await client.request(method, path, json=body, headers=headers)
            if response.status_code >= 300:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:200]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(requests) / (time.perf_counter() - started)


def direct_deploys(
    app: RegistryApplication, ids: list[UUID], versions: int, concurrency: int
) -> float:
    def deploy(model_id: UUID) -> None:
        with acting_as("benchmark", "direct"):
            app.deploy(
                model_id, versions - 1, "production", "direct", respond=lambda m, d: (200, {})
            )

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(deploy, ids))
    return len(ids) / (time.perf_counter() - started)


async def main(url: str, models: int, versions: int, requests: int, concurrency: int) -> None:
    await migrate(url)
    app = RegistryApplication(env=eventsourcing_env(url, pool_size=concurrency))
    started = time.perf_counter()
    ids = seed(app, models, versions)
    print(f"seeded {models} models x {versions} versions in {time.perf_counter() - started:.1f}s")
    conn = await asyncpg.connect(url)
    key, _ = await keys.create_key(conn, roles=["operator"], name="bench")
    await conn.close()

    env = service_env(url)
    bare_port = free_port()
    # As `aimm dev` runs it: the API and the projector as separate processes.
    with aimm_services(env) as aimm:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(timeout=60) as client:
            # Wait until the projector has caught up with the seed, then take the body.
            while True:
                page = await client.get(f"{aimm.base}/api/v1/ai/models?limit=50", headers=headers)
                items = page.json()["items"]
                if len(items) == min(50, models) and all(
                    i["latest_version"] == versions for i in items
                ):
                    break
                await asyncio.sleep(0.5)
            aimm.procs.append(start_bare("/api/v1/ai/models", "", page.content, env, bare_port)[0])
            get_list = [("GET", "/api/v1/ai/models?limit=50", None)] * requests
            bare = await hammer(
                client,
                [("GET", f"http://127.0.0.1:{bare_port}{p}", b) for _, p, b in get_list],
                concurrency,
                headers,
            )
            ours = await hammer(
                client,
                [("GET", f"{aimm.base}{p}", b) for _, p, b in get_list],
                concurrency,
                headers,
            )
            print(
                f"GET /api/v1/ai/models: aimm {ours:,.0f} req/s, "
                f"bare Litestar from memory {bare:,.0f} req/s, "
                f"ratio {ours / bare:.2f} (goal >= {GOAL_LIST})"
            )

            half = len(ids) // 2
            http_ids, direct_ids = ids[:half], ids[half:]
            deploys = [
                (
                    "POST",
                    f"{aimm.base}/api/v1/ai/models/{i}/deploy",
                    {"version": versions - 1, "reason": "bench"},
                )
                for i in http_ids
            ]
            http_rate = await hammer(client, deploys, concurrency, headers)
        direct_rate = await asyncio.to_thread(
            direct_deploys, app, direct_ids, versions, concurrency
        )
        print(
            f"deploy: HTTP {http_rate:,.0f} commands/s, "
            f"direct Application {direct_rate:,.0f} commands/s, "
            f"ratio {http_rate / direct_rate:.2f} (goal >= {GOAL_DEPLOY})"
        )
    app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    options = parser.parse_args()
    with postgres_server() as server, fresh_database(server) as database_url:
        asyncio.run(
            main(
                database_url,
                options.models,
                options.versions,
                options.requests,
                options.concurrency,
            )
        )
