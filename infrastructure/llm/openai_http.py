"""The OpenAI-compatible HTTP provider (``/chat/completions``), and the wire format it shares
with the embedded server (llama.cpp answers in the same shape)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import httpx

from application.ports import Completion, CompletionRequest, LLMError

# When neither a setting nor the server's model list gives a context length: conservative,
# so that a request validated against it is rarely too long for a current chat model (old
# ones had 4k); set the length explicitly to allow more.
FALLBACK_CONTEXT_LENGTH = 4096

# Where servers put a model's context length in their ``/models`` entries: llama.cpp's
# ``meta.n_ctx`` (what the server allocated), vLLM's ``max_model_len``, OpenRouter's and
# LM Studio's ``context_length``, Groq's ``context_window``.
_CONTEXT_KEYS = ("max_model_len", "context_length", "context_window")


def chat_messages(request: CompletionRequest) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages.append({"role": "user", "content": request.user})
    return messages


def chat_body(request: CompletionRequest) -> dict[str, Any]:
    """The standard fields of a chat completion request (no server-specific extensions:
    OpenAI refuses arguments it does not know)."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": chat_messages(request),
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "stream": False,
    }
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    return body


def error_message(answer: object) -> str | None:
    """The message of an OpenAI-style error body (``{"error": {...}}``), if it is one."""
    if not isinstance(answer, Mapping):
        return None
    error = answer.get("error")
    if isinstance(error, Mapping):
        kind = error.get("type") or error.get("code")
        message = str(error.get("message") or error)
        return f"{message} ({kind})" if kind else message
    if isinstance(error, str):
        return error
    return None


def parse_completion(answer: object, latency_ms: float, where: str) -> Completion:
    """A chat completion answer as a ``Completion``; anything else is an ``LLMError``."""
    try:
        return _completion(answer, latency_ms)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise LLMError(
            f"{where} gave an answer that is not a chat completion with usage: {str(answer)[:300]}"
        ) from None


def _completion(answer: Any, latency_ms: float) -> Completion:
    choice = answer["choices"][0]
    text = choice["message"]["content"] or ""
    if not isinstance(text, str):
        raise TypeError("the message content is not text")
    usage = answer["usage"]
    return Completion(
        text=text,
        tokens_in=int(usage["prompt_tokens"]),
        tokens_out=int(usage["completion_tokens"]),
        latency_ms=latency_ms,
        # "stop" and "length" as they come; llama.cpp says nothing else, a remote may
        # ("content_filter"): passed on as it is, and "stop" when it says nothing.
        finish_reason=str(choice.get("finish_reason") or "stop"),
        model=str(answer.get("model") or ""),
    )


class OpenAIHTTPProvider:
    """Chat completions from an OpenAI-compatible server (OpenAI, vLLM, llama.cpp, …).

    ``base_url`` is the API's base as the OpenAI client takes it, version included
    (``https://api.openai.com/v1``, ``http://127.0.0.1:8080/v1``); requests go to
    ``{base_url}/chat/completions``. One ``httpx.Client`` (pooled connections, safe to share
    between threads) with a short connect timeout and a long read timeout: a completion
    takes as long as the model needs to write it.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        context_length: int | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the LLM base URL must be http(s)://…, got {base_url!r}")
        if context_length is not None and context_length < 1:
            raise ValueError(f"context_length must be positive, got {context_length}")
        self.base_url = base_url.rstrip("/")
        self._context_length = context_length
        self._context_lengths: dict[str, int] = {}
        self._lock = threading.Lock()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
        )

    def complete(self, request: CompletionRequest) -> Completion:
        where = f"POST {self.base_url}/chat/completions"
        started = time.perf_counter()
        response = self._send("POST", "/chat/completions", chat_body(request))
        latency_ms = (time.perf_counter() - started) * 1000
        completion = parse_completion(_answer(response, where), latency_ms, where)
        return completion if completion.model else replace(completion, model=request.model)

    def context_length(self, model: str) -> int:
        """The setting when given; else what the server's ``/models`` says of the model
        (asked once per model); else ``FALLBACK_CONTEXT_LENGTH``. A server without a list
        (404), or whose list says nothing of it, gets the fallback; an unreachable or
        refusing one is an ``LLMError``."""
        if self._context_length is not None:
            return self._context_length
        with self._lock:
            known = self._context_lengths.get(model)
        if known is not None:
            return known
        response = self._send("GET", "/models", None)
        # No list (404) is not an error; a refusal (a wrong key, a server fault) is.
        listing = (
            None
            if response.status_code == 404
            else _answer(response, f"GET {self.base_url}/models")
        )
        length = _listed_context_length(listing, model) or FALLBACK_CONTEXT_LENGTH
        with self._lock:
            self._context_lengths[model] = length
        return length

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        where = f"{method} {self.base_url}{path}"
        try:
            return self._client.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise LLMError(f"{where} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"cannot reach the LLM server: {where}: {exc}") from exc


def _answer(response: httpx.Response, where: str) -> object:
    """The JSON of a successful answer; an error status is an ``LLMError`` with its message."""
    try:
        answer: object = response.json()
    except ValueError:
        answer = None
    if response.is_error:
        detail = error_message(answer) or response.text[:300] or response.reason_phrase
        raise LLMError(f"{where} answered {response.status_code}: {detail}")
    if answer is None:
        raise LLMError(f"{where} answered {response.status_code} without JSON")
    return answer


def _listed_context_length(listing: object, model: str) -> int | None:
    if not isinstance(listing, Mapping) or not isinstance(listing.get("data"), list):
        return None
    entries = [entry for entry in listing["data"] if isinstance(entry, Mapping)]
    # The model asked for; a server with one model (llama.cpp) serves it under any name.
    named = [e for e in entries if e.get("id") == model or model in (e.get("aliases") or ())]
    chosen = named or (entries if len(entries) == 1 else [])
    for entry in chosen:
        meta = entry.get("meta")
        candidates = [entry.get(key) for key in _CONTEXT_KEYS]
        if isinstance(meta, Mapping):
            candidates.insert(0, meta.get("n_ctx"))
        for value in candidates:
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None
