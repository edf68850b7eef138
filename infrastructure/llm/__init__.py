"""LLM providers behind ``application.ports.LLMProvider``, and the registry of them by name.

``embedded`` (``embedded.EmbeddedProvider``) runs a GGUF model in this process, offline; it
is always there, and loads its model at the first call. ``openai``
(``openai_http.OpenAIHTTPProvider``) calls an OpenAI-compatible server; it is there when a
base URL is configured. See ``docs/llm.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from application.ports import LLMProvider
from infrastructure.llm.embedded import (
    DEFAULT_CONTEXT_SIZE,
    DEFAULT_MODEL,
    EmbeddedProvider,
    default_model_path,
)
from infrastructure.llm.openai_http import FALLBACK_CONTEXT_LENGTH, OpenAIHTTPProvider

__all__ = [
    "DEFAULT_CONTEXT_SIZE",
    "DEFAULT_MODEL",
    "FALLBACK_CONTEXT_LENGTH",
    "EmbeddedProvider",
    "LLMProviders",
    "OpenAIHTTPProvider",
    "build_providers",
    "default_model_path",
]


class LLMProviders(Mapping[str, LLMProvider]):
    """The providers by name; ``close()`` releases their models and connections."""

    def __init__(self, providers: Mapping[str, LLMProvider]) -> None:
        self._providers = dict(providers)

    def __getitem__(self, name: str) -> LLMProvider:
        return self._providers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._providers)

    def __len__(self) -> int:
        return len(self._providers)

    def close(self) -> None:
        for provider in self._providers.values():
            close = getattr(provider, "close", None)  # not in the port: a fake has none
            if callable(close):
                close()


def build_providers(  # noqa: PLR0913 (one keyword per setting)
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    context_length: int | None = None,
    timeout: float = 120.0,
    embedded_models: Mapping[str, Path] | None = None,
    embedded_context_size: int = DEFAULT_CONTEXT_SIZE,
    embedded_threads: int | None = None,
) -> LLMProviders:
    """The registry the composition root passes on, from the settings' values.

    ``base_url`` (``AIMM_LLM_BASE_URL``) unset: no ``openai`` provider. ``api_key``
    (``AIMM_LLM_API_KEY``), ``context_length`` (``AIMM_LLM_CONTEXT_LENGTH``) and
    ``timeout`` (``AIMM_LLM_TIMEOUT``) are the remote's; the ``embedded_*`` values the
    embedded provider's (``AIMM_LLM_EMBEDDED_CONTEXT``, ``AIMM_LLM_EMBEDDED_THREADS``).
    Nothing is loaded or connected here.
    """
    providers: dict[str, LLMProvider] = {
        EmbeddedProvider.name: EmbeddedProvider(
            embedded_models, context_size=embedded_context_size, threads=embedded_threads
        )
    }
    if base_url:
        providers[OpenAIHTTPProvider.name] = OpenAIHTTPProvider(
            base_url, api_key=api_key, context_length=context_length, timeout=timeout
        )
    return LLMProviders(providers)
