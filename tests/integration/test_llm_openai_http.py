"""The OpenAI-compatible provider against a real server: llama.cpp's own, as xllamacpp runs
it, in a child process on a free loopback port, serving the embedded model's GGUF."""

from __future__ import annotations

import selectors
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from application.ports import CompletionRequest, LLMError
from infrastructure.llm import (
    DEFAULT_MODEL,
    FALLBACK_CONTEXT_LENGTH,
    OpenAIHTTPProvider,
    build_providers,
    default_model_path,
)
from tests.conftest import free_port

API_KEY = "test-llm-key-0123456789"
SERVER_CONTEXT = 1024

# The child: xllamacpp.Server loads the model, then listens (its constructor returns when
# both are done, so the printed line means ready); it serves until its stdin is closed.
SERVE = """
import sys
import xllamacpp

model, port, key, alias, n_ctx = sys.argv[1:]
params = xllamacpp.CommonParams()
params.model.path = model
params.model_alias = {alias}
params.n_ctx = int(n_ctx)
params.n_parallel = 1
params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
params.hostnames = ["127.0.0.1"]
params.port = int(port)
params.api_keys = [key]
params.verbosity = 1
server = xllamacpp.Server(params)
print("listening", server.listening_address, flush=True)
sys.stdin.read()
"""


@dataclass(frozen=True)
class LlamaServer:
    url: str  # the base URL as the OpenAI client takes it: ``…/v1``
    log: Path


def wait_for_line(proc: subprocess.Popen[str], log: Path, timeout: float = 60.0) -> str:
    """The child's first line, read as soon as it is written (no polling)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError(f"the LLM server said nothing in {timeout}s:\n{log.read_text()}")
    line = proc.stdout.readline()
    if not line.startswith("listening http://"):
        raise RuntimeError(f"the LLM server did not start ({line!r}):\n{log.read_text()}")
    return line.split()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    port = free_port()
    log = tmp_path_factory.mktemp("llm") / "server.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVE,
                str(default_model_path()),
                str(port),
                API_KEY,
                DEFAULT_MODEL,
                str(SERVER_CONTEXT),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            address = wait_for_line(proc, log)
            assert address == f"http://127.0.0.1:{port}"
            assert httpx.get(f"{address}/health", timeout=5).json() == {"status": "ok"}
            yield LlamaServer(url=f"{address}/v1", log=log)
        finally:
            assert proc.stdin is not None
            proc.stdin.close()  # the child's read returns: it stops its server and exits
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def provider(llama_server: LlamaServer) -> Iterator[OpenAIHTTPProvider]:
    remote = OpenAIHTTPProvider(llama_server.url, api_key=API_KEY, timeout=60)
    yield remote
    remote.close()


def ask(user: str, **fields: Any) -> CompletionRequest:
    request = CompletionRequest(
        system="You are a concise assistant.",
        user=user,
        model=DEFAULT_MODEL,
        temperature=0.0,
        max_tokens=12,
        seed=11,
    )
    return replace(request, **fields)


def test_the_server_answers_through_the_provider(provider: OpenAIHTTPProvider) -> None:
    completion = provider.complete(ask("What is the capital of France?"))
    assert completion.text.strip()
    assert completion.tokens_in > 0
    assert 0 < completion.tokens_out <= 12
    assert completion.finish_reason in {"stop", "length"}
    assert completion.model == DEFAULT_MODEL  # what the server says it ran
    assert completion.latency_ms > 0


def test_temperature_zero_with_a_seed_gives_the_same_text_twice(
    provider: OpenAIHTTPProvider,
) -> None:
    request = ask("Name three fruits.", max_tokens=24)
    first = provider.complete(request)
    provider.complete(ask("Describe the sea in one sentence.", max_tokens=24))
    again = provider.complete(request)
    assert first.text
    assert again.text == first.text


def test_usage_maps_to_tokens_in_and_out(
    provider: OpenAIHTTPProvider, llama_server: LlamaServer
) -> None:
    request = ask("Write a long story about a dragon.", max_tokens=5)
    completion = provider.complete(request)
    raw = httpx.post(
        f"{llama_server.url}/chat/completions",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.user},
            ],
            "max_tokens": 5,
            "temperature": 0.0,
            "seed": 11,
        },
        timeout=60,
    ).json()
    assert (completion.tokens_in, completion.tokens_out) == (
        raw["usage"]["prompt_tokens"],
        raw["usage"]["completion_tokens"],
    )
    assert completion.tokens_out == 5
    assert completion.finish_reason == "length"
    assert completion.text == raw["choices"][0]["message"]["content"]


def test_a_stop_sequence_is_sent(provider: OpenAIHTTPProvider) -> None:
    full = provider.complete(ask("Write a long story about a dragon.", max_tokens=32))
    words = [word for word in full.text.split() if len(word) >= 4]
    assert len(words) >= 4, full.text
    stop = words[len(words) // 2]
    stopped = provider.complete(
        ask("Write a long story about a dragon.", max_tokens=32, stop=(stop,))
    )
    assert stopped.text == full.text[: full.text.index(stop)]
    assert stopped.finish_reason == "stop"


def test_the_context_length_comes_from_the_setting_or_the_server_s_model_list(
    provider: OpenAIHTTPProvider, llama_server: LlamaServer
) -> None:
    assert provider.context_length(DEFAULT_MODEL) == SERVER_CONTEXT  # llama.cpp's meta.n_ctx
    configured = OpenAIHTTPProvider(llama_server.url, api_key=API_KEY, context_length=2048)
    try:
        assert configured.context_length(DEFAULT_MODEL) == 2048
    finally:
        configured.close()


def test_a_server_without_a_model_list_gets_the_conservative_default(
    llama_server: LlamaServer,
) -> None:
    # A base URL whose /models is not there (404) but which is reachable.
    elsewhere = OpenAIHTTPProvider(
        llama_server.url.removesuffix("/v1") + "/nothing", api_key=API_KEY
    )
    try:
        assert elsewhere.context_length(DEFAULT_MODEL) == FALLBACK_CONTEXT_LENGTH
    finally:
        elsewhere.close()


def test_an_unreachable_server_is_an_llm_error_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    unreachable = OpenAIHTTPProvider(url, connect_timeout=2)
    try:
        with pytest.raises(LLMError, match=rf"cannot reach the LLM server: POST {url}/chat"):
            unreachable.complete(ask("Hi"))
        with pytest.raises(LLMError, match="cannot reach the LLM server"):
            unreachable.context_length(DEFAULT_MODEL)
    finally:
        unreachable.close()


def test_a_wrong_key_is_an_llm_error_with_the_status_and_the_server_s_message(
    llama_server: LlamaServer,
) -> None:
    wrong = OpenAIHTTPProvider(llama_server.url, api_key="not-the-key")
    try:
        with pytest.raises(LLMError, match=r"answered 401: Invalid API Key"):
            wrong.complete(ask("Hi"))
        with pytest.raises(LLMError, match=r"/models answered 401"):
            wrong.context_length(DEFAULT_MODEL)
    finally:
        wrong.close()


def test_a_prompt_beyond_the_context_is_an_llm_error_with_400(
    provider: OpenAIHTTPProvider,
) -> None:
    with pytest.raises(LLMError, match=r"answered 400: .*exceeds the available context size"):
        provider.complete(ask("hello " * SERVER_CONTEXT))


def test_the_registry_has_the_openai_provider_only_with_a_base_url(
    llama_server: LlamaServer,
) -> None:
    assert set(build_providers()) == {"embedded"}
    providers = build_providers(base_url=llama_server.url, api_key=API_KEY, context_length=512)
    try:
        assert set(providers) == {"embedded", "openai"}
        assert providers["openai"].context_length(DEFAULT_MODEL) == 512
        assert providers["openai"].complete(ask("Hi", max_tokens=2)).tokens_out <= 2
    finally:
        providers.close()
