"""The assistant, each figure against a baseline measured in the same run.

Run: ``.venv/bin/python -m benchmarks.assistant`` (a few minutes on two cores; ``--help``
for the knobs). PostgreSQL comes from ``AIMM_DATABASE_URL`` when set, else the embedded
server is started; the benchmark works in a fresh database that it drops. ``aimm seed``
adds the four seed roles, then ``aimm projector`` and ``aimm serve`` run as processes
(as ``aimm dev`` runs them).

(a) ``GET /api/v1/ai-assistant/resolve?role&unit`` (what every agent call asks first)
    against a bare Litestar endpoint serving the same bytes from memory, one client at the
    same concurrency: requests per second and p99 latency. Three cases: the role's
    production prompt (no experiment); a running 50/50 experiment whose units have all
    been exposed already (an agent fleet's steady state: a read); and new units under
    that experiment (each appends its one exposure event). ``resolve`` reads the read
    models, so each case starts once they show what it measures.
(b) ``POST /api/v1/ai-assistant/prompts/{id}/test`` with N sample inputs on the embedded
    model against ``EmbeddedProvider.complete`` called in this process with the same
    rendered messages and settings, one after another: completions per second.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from application.ports import CompletionRequest
from benchmarks.common import aimm_services, fresh_database, postgres_server, service_env
from benchmarks.registry import start_bare
from infrastructure import keys
from infrastructure.llm.embedded import EmbeddedProvider
from infrastructure.schema import migrate

GOAL_RESOLVE = 0.5
GOAL_PROMPT_TESTS = 0.9
ROLE = "risk-analyst"


async def timed(
    client: httpx.AsyncClient, urls: list[str], concurrency: int, conflicts: list[str] | None = None
) -> tuple[float, float]:
    """Requests per second and p99 latency (ms) over ``urls``; every answer must be 2xx
    (or, with ``conflicts``, a 409 is counted there instead of failing the run)."""
    queue = list(reversed(urls))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            url = queue.pop()
            began = time.perf_counter()
            response = await client.get(url)
            latencies.append((time.perf_counter() - began) * 1000)
            if response.status_code == 409 and conflicts is not None:
                conflicts.append(url)
            elif response.status_code >= 300:
                raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:200]}")

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return len(urls) / elapsed, statistics.quantiles(latencies, n=100)[98]


async def ok(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


async def second_version(client: httpx.AsyncClient, base: str) -> tuple[str, int]:
    """The role's production prompt gets a second version: the experiment's variant B."""
    page = await ok(await client.get(f"{base}/api/v1/ai-assistant/prompts", params={"role": ROLE}))
    prompt = next(p for p in page["items"] if "production" in p["labels"])
    version = await ok(
        await client.get(
            f"{base}/api/v1/ai-assistant/prompts/{prompt['id']}/versions/"
            f"{prompt['labels']['production']}"
        )
    )
    body = {
        "system_template": version["system_template"] + " Answer in at most five sentences.",
        "user_template": version["user_template"],
        "variables": version["variables"],
        "message": "benchmark: a shorter answer",
    }
    response = await client.put(
        f"{base}/api/v1/ai-assistant/prompts/{prompt['id']}",
        json=body,
        headers={"If-Match": f'"{prompt["version"]}"'},
    )
    created = await ok(response)
    return str(prompt["id"]), int(created["version"])


async def resolve_case(
    client: httpx.AsyncClient,
    base: str,
    bare: str,
    what: str,
    units: list[str],
    concurrency: int,
) -> None:
    urls = [f"{base}/api/v1/ai-assistant/resolve?role={ROLE}&unit={u}" for u in units]
    bare_urls = [f"{bare}/api/v1/ai-assistant/resolve?role={ROLE}&unit={u}" for u in units]
    conflicts: list[str] = []
    ours, ours_p99 = await timed(client, urls, concurrency, conflicts)
    them, them_p99 = await timed(client, bare_urls, concurrency)
    refused = f"; {len(conflicts)} of {len(urls)} answered 409 (retry)" if conflicts else ""
    print(
        f"resolve, {what}, concurrency {concurrency}: aimm {ours:,.0f} req/s (p99 "
        f"{ours_p99:.1f} ms), bare {them:,.0f} req/s (p99 {them_p99:.1f} ms), ratio "
        f"{ours / them:.2f} (goal >= {GOAL_RESOLVE}){refused}"
    )


async def resolve_benchmark(
    client: httpx.AsyncClient,
    base: str,
    env: dict[str, str],
    requests: int,
    concurrency: int,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    sample = await client.get(f"{base}/api/v1/ai-assistant/resolve?role={ROLE}&unit=u0")
    await ok(sample)
    bare_proc, bare_port = start_bare(
        "/api/v1/ai-assistant/resolve", "role: str, unit: str", sample.content, env
    )
    procs.append(bare_proc)  # stopped by the caller, even when a case fails
    bare = f"http://127.0.0.1:{bare_port}"
    units = [f"u{i % 200}" for i in range(requests)]
    await resolve_case(client, base, bare, "production prompt, no experiment", units, concurrency)

    prompt_id, version = await second_version(client, base)
    production = int(sample.json()["prompt_version"])
    started = await client.post(
        f"{base}/api/v1/ai-assistant/experiments",
        json={
            "role": ROLE,
            "variants": [
                {"prompt_id": prompt_id, "prompt_version": production},
                {"prompt_id": prompt_id, "prompt_version": version},
            ],
            "metric": "rate",
            "min_sample": 100,
            "reason": "benchmark",
        },
    )
    await ok(started)
    experiment = f"{base}/api/v1/ai-assistant/experiments/{started.json()['id']}"
    # resolve reads the read models: measure once they show the experiment running
    seen = {"role": ROLE, "unit": "warm-up", "wait_for": started.headers["aimm-position"]}
    await ok(await client.get(f"{base}/api/v1/ai-assistant/resolve", params=seen))
    # each new unit appends its own Exposure (no contention between units); measured at
    # the same concurrency, and one request at a time
    fresh = [f"new{i}" for i in range(min(requests, 400))]
    what = "experiment, new units (one exposure event each)"
    half = len(fresh) // 2
    await resolve_case(client, base, bare, what, fresh[:half], concurrency)
    await resolve_case(client, base, bare, what, fresh[half:], 1)
    for _ in range(600):  # the read model has every exposure: the steady state is a read
        if (await ok(await client.get(experiment)))["exposed"] >= len(fresh):
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("the read models did not show the exposures within 30 s")
    exposed = [fresh[i % len(fresh)] for i in range(requests)]
    await resolve_case(
        client, base, bare, "experiment, units already exposed", exposed, concurrency
    )


async def prompt_test_benchmark(client: httpx.AsyncClient, base: str, inputs: int) -> None:
    page = await ok(await client.get(f"{base}/api/v1/ai-assistant/prompts", params={"role": ROLE}))
    prompt = next(p for p in page["items"] if "production" in p["labels"])
    body: dict[str, Any] = {
        "versions": ["production"],
        "inputs": [
            {
                "values": {
                    "portfolio": f"{10 * (i + 1)} shares of SPY, {5 * (i + 2)} of QQQ",
                    "question": f"What is my largest risk today (case {i})?",
                }
            }
            for i in range(inputs)
        ],
        "settings": {"temperature": 0, "seed": 7, "max_tokens": 48},
        "reason": "benchmark",
    }
    # the server loads the model at its first need: one warm-up run outside the clock
    warm = dict(body, inputs=body["inputs"][:1])
    test_url = f"{base}/api/v1/ai-assistant/prompts/{prompt['id']}/test"
    await ok(await client.post(test_url, json=warm))
    began = time.perf_counter()
    run = await ok(await client.post(test_url, json=body))
    ours = inputs / (time.perf_counter() - began)
    subject = run["subjects"][0]
    settings = subject["settings"]
    provider = EmbeddedProvider()
    requests = [
        CompletionRequest(
            system=case["rendered_system"],
            user=case["rendered_user"],
            model=subject["provider_model"],
            temperature=settings["temperature"],
            max_tokens=settings["max_tokens"],
            top_p=settings["top_p"],
            stop=tuple(settings["stop"]),
            seed=settings["seed"],
        )
        for case in run["cases"]
    ]
    provider.complete(requests[0])  # load the model outside the clock, as the server did
    began = time.perf_counter()
    outputs = [provider.complete(r) for r in requests]
    direct = len(requests) / (time.perf_counter() - began)
    same = sum(o.text == c["output"] for o, c in zip(outputs, run["cases"], strict=True))
    print(
        f"prompt test, {inputs} inputs (max_tokens {settings['max_tokens']}): through the API "
        f"{ours:.2f} completions/s, the provider called directly {direct:.2f} completions/s, "
        f"ratio {ours / direct:.2f} (goal >= {GOAL_PROMPT_TESTS}); identical outputs "
        f"{same}/{len(requests)}"
    )


async def main(url: str, options: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="aimm-bench-data-"))
    await migrate(url)
    conn = await asyncpg.connect(url)
    key, _ = await keys.create_key(conn, roles=["admin"], name="bench")
    await conn.close()
    env = service_env(url, AIMM_DATA_DIR=str(data_dir))
    subprocess.run([sys.executable, "-m", "api.cli", "seed"], env=env, check=True)  # noqa: ASYNC221
    with aimm_services(env) as aimm:
        async with httpx.AsyncClient(
            timeout=600, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            for _ in range(300):  # the projector has the seed roles in the read models
                page = await client.get(f"{aimm.base}/api/v1/ai-assistant/prompts")
                if page.status_code == 200 and page.json()["items"]:
                    break
                await asyncio.sleep(0.1)
            await resolve_benchmark(
                client, aimm.base, env, options.requests, options.concurrency, aimm.procs
            )
            await prompt_test_benchmark(client, aimm.base, options.inputs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--inputs", type=int, default=10, help="sample inputs of the prompt test")
    options = parser.parse_args()
    with postgres_server() as server, fresh_database(server) as database_url:
        asyncio.run(main(database_url, options))
