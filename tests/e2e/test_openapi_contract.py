"""The served OpenAPI document is the contract: a property-based tester driven by it agrees.

Schemathesis reads ``/schema/openapi.json`` from the real app (the ``aimm serve`` command on
a fresh database, over HTTP on loopback), generates requests from it — valid ones, and ones
the schema forbids — and runs every check it has: no server error; every status code,
content type and header of a response is the one documented; a schema-valid request is
not refused as malformed; a schema-invalid one is refused; OPTIONS lists the methods the
document has; a request without credentials is refused.

The run is bounded (``MAX_EXAMPLES`` per operation, a fixed seed, so a failure reproduces)
and must end with zero failures. Every deliberate exclusion is a row of :data:`EXCLUSIONS`
with its reason; there is no other. ``AIMM_CONTRACT_PATHS=REGEX`` narrows the run to the
paths matching REGEX while working on one context (the suite runs them all).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ADMIN_KEY = "contract-admin-key-0123456789"
MAX_EXAMPLES = int(os.environ.get("AIMM_CONTRACT_EXAMPLES", "25"))
SEED = 20261201
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Exclusion:
    """A check relaxed for some operations, and why the schema cannot say it."""

    operations: str  # a regular expression over "METHOD /path"
    check: str
    expected_statuses: tuple[str, ...]
    reason: str


# A schema-valid request may still be refused by the domain (422) or meet an unknown id
# (404, already expected by schemathesis): those are answers about the state, not about
# the request's shape, and no JSON Schema can express them.
POSITIVE = ("2xx", "401", "403", "404", "409", "503")
# For each operation and check, the first row that matches decides: specific rows first.
EXCLUSIONS: list[Exclusion] = [
    Exclusion(
        operations=r"^POST /api/v1/memory/agents/\{agent_id\}/forget$",
        check="positive_data_acceptance",
        expected_statuses=(*POSITIVE, "400", "422"),
        reason="`cursor` (in the body, so the Idempotency-Key covers it) is opaque: only a "
        "`next_cursor` this API returned decodes; any other string is a 400 naming `cursor`",
    ),
    Exclusion(
        operations=r"^POST /api/v1/market-data/\{ticker\}/bars$",
        check="positive_data_acceptance",
        expected_statuses=(*POSITIVE, "400", "422"),
        reason="the bar rules that span fields or rows (low <= open, close <= high, a date "
        "once per import, a real calendar date) and the content of a CSV or Parquet body "
        "cannot be said in JSON Schema: such rows are a 400 naming the rows (README), and "
        "nothing is appended",
    ),
    Exclusion(
        operations=r"^(PUT /api/v1/ai-assistant/(config|prompts/\{prompt_id\}(/suite)?)|"
        r"POST /api/v1/ai-assistant/(roles|prompts|prompts/\{prompt_id\}/(test|suite/run)|"
        r"experiments|"
        r"experiments/\{experiment_id\}/(outcomes|conclude)|roles/\{role\}/complete))$",
        check="positive_data_acceptance",
        expected_statuses=(*POSITIVE, "400", "422"),
        reason="settings, templates and references are checked against the stored state and "
        "every bad field is named in one 400 (docs/assistant.md): max_tokens above the "
        "context length of the model chosen, a model the providers or the registry do not "
        "have, a role or prompt that does not exist, a template using a variable it does "
        "not declare or a `{{` that opens no placeholder; a prompt test naming a version "
        "or label the prompt does not have, or more than 500 cases (versions × inputs); a "
        "suite's regex that does not compile or limit that is not positive; an "
        "experiment's variant that is no version of a prompt of the role, an outcome that "
        "is not 0 or 1 for a rate, a winner past the last variant, a variable a completion "
        "lacks",
    ),
    Exclusion(
        operations=r"^GET /api/v1/(ai/models(/\{model_id\}/deployments)?|audit/events|"
        r"market-data(/\{ticker\})?|ml/(datasets|jobs)|memory/(search|agents|agents/[^/]+/timeline)|"
        r"predictions/jobs(/\{job_id\}/predictions)?|ai-assistant/(prompts(/\{prompt_id\}/"
        r"(versions|label-history|tests|test-jobs))?|roles/\{role\}/history|experiments))$",
        check="positive_data_acceptance",
        expected_statuses=(*POSITIVE, "400"),
        reason="`cursor` is opaque: only a `next_cursor` this API returned decodes; any "
        "other string of the cursor alphabet is a 400 naming `cursor`",
    ),
    Exclusion(
        operations=r"^GET /api/v1/predictions/compare$",
        check="positive_data_acceptance",
        expected_statuses=(*POSITIVE, "422"),
        reason="models of a known ticker that share too few scored forecast origins cannot "
        "be compared (a Diebold-Mariano test needs at least 10): 422 with `origins` and "
        "`needed`, a state of the predictions log, not of the query",
    ),
    Exclusion(
        operations=r"^(GET /api/v1/|POST /api/v1/ai-assistant/roles/\{role\}/complete$)",
        check="not_a_server_error",
        expected_statuses=("1xx", "2xx", "3xx", "4xx", "503"),
        reason="`wait_for` (on every query, and on `complete`, which resolves from the read "
        "models) may name a position the read models have not reached (a "
        "generated one usually lies past the end of the log): the documented answer is 503 "
        "with `Retry-After` (at once past the end of the log, else after 5 s), a state of "
        "the system, not a fault",
    ),
    Exclusion(
        operations=r"^(POST|PATCH|PUT|DELETE) ",
        check="positive_data_acceptance",
        expected_statuses=(*POSITIVE, "422"),
        reason="a command on well-formed input can still be refused by a domain rule that "
        "depends on the stored state (deploying an archived version, a classifier on a "
        "return dataset, rows that contradict stored bars): 422, and nothing is appended",
    ),
]


def config_toml() -> str:
    """The schemathesis configuration: global settings and :data:`EXCLUSIONS`."""
    lines = [
        "[generation]",
        # PostgreSQL text cannot hold NUL: every text field refuses it with a 400 naming the
        # field. JSON Schema could only say so with a pattern on every string of the API.
        "allow-x00 = false",
        "",
    ]
    for exclusion in EXCLUSIONS:
        statuses = ", ".join(f'"{s}"' for s in exclusion.expected_statuses)
        lines += [
            "[[operations]]",
            f"include-name-regex = '{exclusion.operations}'",
            f"checks.{exclusion.check}.expected-statuses = [{statuses}]",
            "",
        ]
    return "\n".join(lines)


def start_server(database_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIMM_")}
    env.update(
        {
            "AIMM_DATABASE_URL": database_url,
            "AIMM_PORT": str(port),
            "AIMM_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "AIMM_LOG_LEVEL": "WARNING",
        }
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", "from api.cli import main; main()", "serve", "--projector"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def wait_until_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not become ready within {timeout}s")


@pytest.mark.contract
def test_the_served_openapi_document_is_the_contract(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    server_log = tmp_path / "server.log"
    proc = start_server(database_url, port, server_log)
    try:
        wait_until_ready(port, proc)
        config = tmp_path / "schemathesis.toml"
        config.write_text(config_toml())
        command = [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(config),
            "--no-color",
            "run",
            f"http://127.0.0.1:{port}/schema/openapi.json",
            "--header",
            f"Authorization: Bearer {ADMIN_KEY}",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            # One worker: with two, hypothesis describes its filters by parsing lambda source
            # in two threads at once, which CPython 3.11's ast.parse does not survive
            # ("AST constructor recursion depth mismatch"), failing the run for nothing.
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--output-truncate",
            "false",
        ]
        paths = os.environ.get("AIMM_CONTRACT_PATHS")
        if paths:
            command += ["--include-path-regex", paths]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    report = result.stdout + result.stderr
    server = server_log.read_text(errors="replace")
    assert result.returncode == 0, (
        f"schemathesis found failures:\n{report[-20000:]}\n--- server log ---\n{server[-5000:]}"
    )
    assert "No issues found" in report or "passed" in report, report[-5000:]
