"""Every operation of the served OpenAPI × every kind of caller: 401, 403 or let through.

The expected roles are the README's role table, written out below as ``SPEC`` (one
entry per operation; an operation the schema serves but ``SPEC`` lacks fails the test,
so a new endpoint cannot ship without a decision). Each operation is called once per
caller: no key, a revoked key, viewer, operator, auditor, admin (the recorded bootstrap
key), an agent key of the agent that owns the memory used, and an agent key of another
agent. "Let through" is anything but 401 and 403 (a 2xx, or a 4xx about the request
itself: Litestar runs a route's guards before it parses parameters and body, so an
empty body is a 400 only once the guard has passed); a 5xx fails the test.

Where a rule sits inside a handler rather than a guard (the admin-only
``…/conclude`` and protected labels, the memory endpoints' agent scope), the request
carries a valid body naming the resource, so the handler reaches the rule. An agent's
key on another agent's memory by id is a 404 by design (``api/controllers/memory.py``:
the memory is hidden, not just forbidden); naming another agent is 403.

The second test reads every log line of such a run at DEBUG: no key material (API keys,
the bootstrap key, the LLM provider's API key) ever appears in it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest

from application.ports import CompletionRequest, LLMError
from infrastructure import keys
from infrastructure.llm import OpenAIHTTPProvider
from tests.helpers import ADMIN_KEY, Api, running_api

READERS = frozenset({"viewer", "operator", "auditor", "admin"})
WRITERS = frozenset({"operator", "admin"})
AUDITORS = frozenset({"auditor", "admin"})
ADMINS = frozenset({"admin"})
ANY_KEY = READERS | {"agent", "other_agent"}
OPEN = ANY_KEY | {"none", "revoked"}
# memory: the agent role for its own agent; another agent's key is refused (403 or 404)
MEMORY_WRITE = WRITERS | {"agent"}
MEMORY_READ = READERS | {"agent"}
# the list of agents answers every agent's key, with its own agent alone
MEMORY_AGENTS = MEMORY_READ | {"other_agent"}

CALLERS = ("none", "revoked", "viewer", "operator", "auditor", "admin", "agent", "other_agent")
MEMORY_SCOPED = {MEMORY_WRITE, MEMORY_READ}

A = "/api/v1/ai-assistant"
SPEC: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/health/live"): OPEN,
    ("GET", "/health/ready"): OPEN,
    ("GET", "/metrics"): ANY_KEY,
    ("GET", "/api/v1/me"): ANY_KEY,
    # registry
    ("POST", "/api/v1/ai/models"): WRITERS,
    ("GET", "/api/v1/ai/models"): READERS,
    ("GET", "/api/v1/ai/models/{model_id}"): READERS,
    ("PATCH", "/api/v1/ai/models/{model_id}"): WRITERS,
    ("POST", "/api/v1/ai/models/{model_id}/versions"): WRITERS,
    ("GET", "/api/v1/ai/models/{model_id}/versions/{version}"): READERS,
    ("POST", "/api/v1/ai/models/{model_id}/versions/{version}/metrics"): WRITERS,
    ("POST", "/api/v1/ai/models/{model_id}/versions/{version}/stage"): WRITERS,
    ("POST", "/api/v1/ai/models/{model_id}/deploy"): WRITERS,
    ("POST", "/api/v1/ai/models/{model_id}/rollback"): WRITERS,
    ("GET", "/api/v1/ai/models/{model_id}/deployments"): READERS,
    ("GET", "/api/v1/ai/models/{model_id}/versions/compare"): READERS,
    ("GET", "/api/v1/ai/models/{model_id}/lineage"): READERS,
    # audit
    ("GET", "/api/v1/audit/events"): AUDITORS,
    ("GET", "/api/v1/audit/aggregates/{aggregate_id}"): AUDITORS,
    ("GET", "/api/v1/audit/verify"): AUDITORS,
    # market data
    ("POST", "/api/v1/market-data/{ticker}/bars"): WRITERS,
    ("GET", "/api/v1/market-data"): READERS,
    ("GET", "/api/v1/market-data/{ticker}"): READERS,
    # training
    ("POST", "/api/v1/ml/datasets"): WRITERS,
    ("GET", "/api/v1/ml/datasets"): READERS,
    ("GET", "/api/v1/ml/datasets/{dataset_id}"): READERS,
    ("POST", "/api/v1/ml/train"): WRITERS,
    ("GET", "/api/v1/ml/jobs"): READERS,
    ("GET", "/api/v1/ml/jobs/{job_id}"): READERS,
    ("GET", "/api/v1/ml/jobs/{job_id}/metrics"): READERS,
    ("POST", "/api/v1/ml/jobs/{job_id}/stop"): WRITERS,
    ("GET", "/api/v1/ml/jobs/compare"): READERS,
    ("GET", "/api/v1/ml/artifacts/{key}"): READERS,
    # predictions
    ("POST", "/api/v1/predictions/run"): WRITERS,
    ("POST", "/api/v1/predictions/backtest"): WRITERS,
    ("GET", "/api/v1/predictions/jobs"): READERS,
    ("GET", "/api/v1/predictions/jobs/{job_id}"): READERS,
    ("GET", "/api/v1/predictions/jobs/{job_id}/predictions"): READERS,
    ("GET", "/api/v1/predictions/{ticker}"): READERS,
    ("GET", "/api/v1/predictions/accuracy"): READERS,
    ("GET", "/api/v1/predictions/compare"): READERS,
    ("GET", "/api/v1/predictions/forecasters"): READERS,
    # memory
    ("POST", "/api/v1/memory"): MEMORY_WRITE,
    ("POST", "/api/v1/memory/batch"): MEMORY_WRITE,
    ("GET", "/api/v1/memory/search"): MEMORY_READ,
    ("GET", "/api/v1/memory/{memory_id}"): MEMORY_READ,
    ("POST", "/api/v1/memory/{memory_id}/reinforce"): MEMORY_WRITE,
    ("DELETE", "/api/v1/memory/{memory_id}"): WRITERS,
    ("POST", "/api/v1/memory/{memory_id}/restore"): WRITERS,
    ("GET", "/api/v1/memory/agents"): MEMORY_AGENTS,
    ("GET", "/api/v1/memory/agents/{agent_id}"): MEMORY_READ,
    ("GET", "/api/v1/memory/agents/{agent_id}/timeline"): MEMORY_READ,
    ("POST", "/api/v1/memory/agents/{agent_id}/forget"): WRITERS,
    # assistant
    ("GET", f"{A}/config"): READERS,
    ("PUT", f"{A}/config"): WRITERS,
    ("POST", f"{A}/roles"): WRITERS,
    ("GET", f"{A}/roles/{{role}}"): READERS,
    ("GET", f"{A}/roles/{{role}}/history"): READERS,
    ("GET", f"{A}/prompts"): READERS,
    ("POST", f"{A}/prompts"): WRITERS,
    ("GET", f"{A}/prompts/{{prompt_id}}"): READERS,
    ("PUT", f"{A}/prompts/{{prompt_id}}"): WRITERS,
    ("GET", f"{A}/prompts/{{prompt_id}}/versions"): READERS,
    ("GET", f"{A}/prompts/{{prompt_id}}/versions/{{version}}"): READERS,
    ("GET", f"{A}/prompts/{{prompt_id}}/diff"): READERS,
    ("GET", f"{A}/prompts/{{prompt_id}}/label-history"): READERS,
    # the protected label ``production`` (the path's {label} below): admin only
    ("PUT", f"{A}/prompts/{{prompt_id}}/labels/{{label}}"): ADMINS,
    ("DELETE", f"{A}/prompts/{{prompt_id}}/labels/{{label}}"): ADMINS,
    ("POST", f"{A}/prompts/{{prompt_id}}/rollback"): ADMINS,
    ("POST", f"{A}/prompts/{{prompt_id}}/test"): WRITERS,
    ("GET", f"{A}/prompts/{{prompt_id}}/tests"): READERS,
    ("GET", f"{A}/prompts/{{prompt_id}}/tests/{{run_id}}"): READERS,
    ("GET", f"{A}/prompts/{{prompt_id}}/test-jobs"): READERS,
    ("GET", f"{A}/prompts/{{prompt_id}}/test-jobs/{{job_id}}"): READERS,
    ("POST", f"{A}/prompts/{{prompt_id}}/test-jobs/{{job_id}}/stop"): WRITERS,
    ("GET", f"{A}/prompts/{{prompt_id}}/suite"): READERS,
    ("PUT", f"{A}/prompts/{{prompt_id}}/suite"): WRITERS,
    ("POST", f"{A}/prompts/{{prompt_id}}/suite/run"): WRITERS,
    ("GET", f"{A}/prompts/{{prompt_id}}/suite/runs"): READERS,
    ("POST", f"{A}/experiments"): WRITERS,
    ("GET", f"{A}/experiments"): READERS,
    ("GET", f"{A}/experiments/{{experiment_id}}"): READERS,
    ("POST", f"{A}/experiments/{{experiment_id}}/outcomes"): WRITERS,
    ("GET", f"{A}/experiments/{{experiment_id}}/results"): READERS,
    ("POST", f"{A}/experiments/{{experiment_id}}/conclude"): ADMINS,
    ("GET", f"{A}/resolve"): WRITERS,
    ("POST", f"{A}/roles/{{role}}/complete"): WRITERS,
}

# Bodies and query parameters that carry a request as far as a rule inside the handler.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/memory"): {"agent_id": "agent-a", "content": "matrix note"},
    ("POST", "/api/v1/memory/batch"): {
        "memories": [{"agent_id": "agent-a", "content": "matrix batch note"}]
    },
    ("POST", "/api/v1/memory/{memory_id}/reinforce"): {"value": 0.5},
    ("PUT", f"{A}/prompts/{{prompt_id}}/labels/{{label}}"): {"version": 1},
    ("POST", f"{A}/prompts/{{prompt_id}}/rollback"): {"label": "production"},
    ("POST", f"{A}/experiments/{{experiment_id}}/conclude"): {"winner": 0},
}
PARAMS: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/api/v1/memory/search"): {"q": "matrix", "agent_id": "agent-a"},
}


def operations(api: Api) -> list[tuple[str, str]]:
    schema = api.client.app.openapi_schema.to_schema()
    return sorted(
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    )


def fill(path: str, memory_id: str) -> str:
    values = {
        "memory_id": memory_id,
        "agent_id": "agent-a",
        "ticker": "SP500",
        "role": "trading-assistant",
        "label": "production",
        "version": "1",
        "key": "sha256:" + "0" * 64,
    }
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], str(uuid.uuid4())), path)


@pytest.fixture
async def callers(api: Api) -> dict[str, dict[str, str]]:
    revoked = await api.key_for("viewer", name="matrix-revoked")
    conn = await asyncpg.connect(api.url)
    try:
        assert await keys.revoke_key(conn, keys.hash_key(revoked)[:12], revoked_by="matrix")
    finally:
        await conn.close()
    agent = await api.key_for("agent", agent_id="agent-a", name="matrix-agent-a")
    other = await api.key_for("agent", agent_id="agent-b", name="matrix-agent-b")
    bearer = {
        "revoked": revoked,
        "agent": agent,
        "other_agent": other,
        **{role: api.keys[role] for role in ("viewer", "operator", "auditor", "admin")},
    }
    headers = {name: {"Authorization": f"Bearer {key}"} for name, key in bearer.items()}
    return {"none": {}, **headers}


async def test_every_operation_answers_every_caller_as_the_role_table_says(
    api: Api, callers: dict[str, dict[str, str]]
) -> None:
    served = operations(api)
    assert set(served) == set(SPEC), (
        f"not in the role table: {sorted(set(served) - set(SPEC))}; "
        f"no longer served: {sorted(set(SPEC) - set(served))}"
    )
    created = await api.client.post(
        "/api/v1/memory",
        json={"agent_id": "agent-a", "content": "the matrix's memory"},
        headers=api.auth("operator"),
    )
    assert created.status_code == 201, created.text
    memory_id = created.json()["id"]

    wrong: list[str] = []
    for method, path in served:
        allowed = SPEC[(method, path)]
        url = fill(path, memory_id)
        for caller in CALLERS:
            response = await api.client.request(
                method,
                url,
                headers={**callers[caller], "Accept": "application/json"},
                params=PARAMS.get((method, path)),
                json=BODIES.get((method, path), {}) if method in {"POST", "PUT", "PATCH"} else None,
            )
            status = response.status_code
            if status >= 500:
                wrong.append(f"{method} {path} as {caller}: {status} {response.text[:200]}")
                continue
            if caller in allowed:
                ok = status not in (401, 403)
                expected = "let through"
            elif caller in ("none", "revoked"):
                ok, expected = status == 401, "401"
            elif caller == "other_agent" and allowed in MEMORY_SCOPED:
                ok, expected = status in (403, 404), "403 (or 404: hidden)"
            else:
                ok, expected = status == 403, "403"
            if not ok:
                wrong.append(
                    f"{method} {path} as {caller}: {status}, expected {expected}: "
                    f"{response.text[:160]}"
                )
    assert not wrong, "\n".join(wrong)


# What ``GET /api/v1/me`` must say each caller may do: the role table's sets above (an
# agent's key may read and write memory, its own agent's, whichever agent it is).
MAY = {
    "read": READERS,
    "write": WRITERS,
    "audit": AUDITORS,
    "read_memory": MEMORY_READ | {"other_agent"},
    "write_memory": MEMORY_WRITE | {"other_agent"},
    "admin": ADMINS,
}


async def test_me_tells_each_key_what_the_role_table_lets_it_do(
    api: Api, callers: dict[str, dict[str, str]]
) -> None:
    """A client hides what a key may not do from ``/me``: it must agree with the guards,
    which the test above holds to the same table."""
    answers = {}
    for caller in CALLERS:
        response = await api.client.get("/api/v1/me", headers=callers[caller])
        if caller in ("none", "revoked"):
            assert response.status_code == 401, (caller, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            continue
        assert response.status_code == 200, (caller, response.text)
        answers[caller] = response.json()
        expected = {permission: caller in who for permission, who in MAY.items()}
        assert answers[caller]["may"] == expected, caller
    assert answers["viewer"]["roles"] == ["viewer"]
    assert answers["viewer"]["principal"] == "test-viewer"
    assert answers["viewer"]["agent_id"] is None
    assert answers["agent"]["roles"] == ["agent"]
    assert (answers["agent"]["agent_id"], answers["other_agent"]["agent_id"]) == (
        "agent-a",
        "agent-b",
    )
    assert answers["admin"]["roles"] == ["admin"]
    # the key id is the one `aimm keys list` shows: the first 12 hex digits of its hash
    viewer_key = callers["viewer"]["Authorization"].removeprefix("Bearer ")
    assert answers["viewer"]["key_id"] == keys.hash_key(viewer_key)[:12]
    # each key is told its own id
    assert len({a["key_id"] for a in answers.values()}) == len(answers)


# -- secrets never in logs ------------------------------------------------------------

LLM_KEY = "llm-provider-secret-0123456789abcdef"


class RefusingProvider(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that refuses every key (as a wrong key would be)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": {"message": "invalid api key", "type": "auth"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture
def refusing_provider() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {self.format(record)} {record.args!r}")


async def test_no_key_material_ever_reaches_the_logs(
    database_url: str, refusing_provider: str
) -> None:
    secrets: list[str] = [ADMIN_KEY, LLM_KEY]
    collect = Collect()
    root = logging.getLogger()
    level = root.level
    async with running_api(database_url) as api:
        # after the app's start, which may configure logging: every logger, at DEBUG
        root.addHandler(collect)
        root.setLevel(logging.DEBUG)
        secrets += [api.keys[role] for role in ("operator", "viewer", "auditor")]
        agent = await api.key_for("agent", agent_id="agent-a", name="log-agent")
        secrets.append(agent)
        for role in ("admin", "operator", "viewer", "auditor"):
            assert (await api.client.get("/api/v1/ai/models", headers=api.auth(role))).is_success
        assert (
            await api.client.post(
                "/api/v1/memory",
                json={"agent_id": "agent-a", "content": "a note"},
                headers={"Authorization": f"Bearer {agent}"},
            )
        ).status_code == 201
        wrong = "aimm_" + "x" * 43  # a key that looks real but is not
        secrets.append(wrong)
        assert (
            await api.client.get("/api/v1/ai/models", headers={"Authorization": f"Bearer {wrong}"})
        ).status_code == 401
        conn = await asyncpg.connect(api.url)
        try:
            key_id = keys.hash_key(agent)[:12]
            assert await keys.revoke_key(conn, key_id, revoked_by="log-test", reason="done")
        finally:
            await conn.close()
        assert (
            await api.client.get("/api/v1/ai/models", headers={"Authorization": f"Bearer {agent}"})
        ).status_code == 401

        provider = OpenAIHTTPProvider(refusing_provider, api_key=LLM_KEY, timeout=10)
    try:
        request = CompletionRequest(
            system="", user="hello", model="any", temperature=0.0, max_tokens=4
        )
        with pytest.raises(LLMError) as refused:
            provider.complete(request)
        assert LLM_KEY not in str(refused.value)
    finally:
        provider.close()
        root.removeHandler(collect)
        root.setLevel(level)

    text = "\n".join(collect.lines)
    assert len(collect.lines) > 10  # the run did log (requests, the provider's HTTP calls)
    assert "HTTP Request" in text
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"{len(leaked)} secret(s) appear in the logs"
