"""Which model an assistant role or a prompt version runs on: references, parsed without I/O.

A reference is one string, as a settings page shows it:

    PROVIDER:NAME        a provider's model: ``embedded:smollm2-135m-instruct``, ``openai:gpt-4o``
    registry:MODEL@N     version N of an LLM model of the registry (MODEL: its id or its name)
    registry:MODEL@ENV   the version active in ENV (``production`` or ``staging``) of that model

A reference is kept as written: ``registry:chat@production`` keeps following the
registry's deployments. What it named at a moment (a ``ResolvedModel``) is worked out
by the application, which reads the registry and asks the provider for the context
length; a prompt version pins that resolution in its event (its lineage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from domain.assistant.prompts import FieldError
from domain.registry.versions import ENVIRONMENTS

REGISTRY = "registry"
PROVIDER_NAME = r"[a-z][a-z0-9_-]{0,31}"
REGISTRY_MODEL = r"[a-z0-9][a-z0-9._/-]{0,99}"  # a registry name (or a lowercase uuid)
# The served schema states it (an ECMA-262 pattern); the parser below says what is wrong.
MODEL_REF_PATTERN = (
    rf"^(?:{REGISTRY}:{REGISTRY_MODEL}@(?:[1-9][0-9]{{0,8}}|{'|'.join(ENVIRONMENTS)})"
    rf"|(?!{REGISTRY}:){PROVIDER_NAME}:[\x21-\x7e]{{1,200}})$"
)
_PROVIDER_REF = re.compile(rf"({PROVIDER_NAME}):([\x21-\x7e]{{1,200}})")
_REGISTRY_REF = re.compile(rf"{REGISTRY}:({REGISTRY_MODEL})@([1-9][0-9]{{0,8}}|[a-z]+)")
# Used for max_tokens when neither a registry version nor its provider states a context
# length; the same conservative guess the OpenAI-compatible provider falls back to.
FALLBACK_CONTEXT_LENGTH = 4096
# The bound of max_tokens when the model's own is unknown (the model was refused, and is
# named apart) and the schema's maximum: no context is longer.
MAX_TOKENS_BOUND = 2**31 - 1
_GRAMMAR = (
    "PROVIDER:NAME (embedded:smollm2-135m-instruct, openai:NAME), registry:MODEL@VERSION "
    f"or registry:MODEL@ENVIRONMENT ({', '.join(ENVIRONMENTS)}), MODEL being an id or a name"
)


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: a provider's model, or a registry model by version or environment."""

    text: str
    provider: str | None  # None for a registry model
    name: str  # the provider's model name, or the registry model's id or name
    version: int | None = None  # registry: a version number
    environment: str | None = None  # registry: whose active version it means

    @property
    def is_registry(self) -> bool:
        return self.provider is None


def parse_model_ref(text: object, field_name: str = "model") -> ModelRef | FieldError:
    """The reference, or a ``FieldError`` naming ``field_name`` and the grammar."""
    if not isinstance(text, str):
        return FieldError(field_name, f"must be a model reference: {_GRAMMAR}")
    registry = _REGISTRY_REF.fullmatch(text)
    if registry is not None:
        return _registry_ref(text, registry.group(1), registry.group(2), field_name)
    provider = _PROVIDER_REF.fullmatch(text)
    if provider is not None and provider.group(1) != REGISTRY:
        return ModelRef(text, provider.group(1), provider.group(2))
    if text.startswith(f"{REGISTRY}:"):
        return FieldError(
            field_name, "a registry model is registry:MODEL@VERSION or registry:MODEL@ENVIRONMENT"
        )
    return FieldError(field_name, f"{text[:60]!r} is not a model reference: {_GRAMMAR}")


def _registry_ref(text: str, model: str, selector: str, field_name: str) -> ModelRef | FieldError:
    if selector.isdigit():
        return ModelRef(text, None, model, version=int(selector))
    if selector in ENVIRONMENTS:
        return ModelRef(text, None, model, environment=selector)
    return FieldError(
        field_name, f"{selector!r} is neither a version number nor {', '.join(ENVIRONMENTS)}"
    )


@dataclass(frozen=True)
class ResolvedModel:
    """What a reference named when it was resolved, and the ``max_tokens`` bound it gives.

    ``provider``/``provider_model`` say who serves it when that is known (a registry
    version says so in its ``parameters.serving``, as ``PROVIDER:NAME``); ``registry_*``
    name the registry version for a registry reference (the prompt's lineage).
    """

    ref: str
    context_length: int
    provider: str | None = None
    provider_model: str | None = None
    registry_model_id: str | None = None
    registry_model_name: str | None = None
    registry_version: int | None = None

    def runs_on(self) -> dict[str, Any]:
        """The JSON an event pins (plain types, keys always present)."""
        return {
            "ref": self.ref,
            "provider": self.provider,
            "provider_model": self.provider_model,
            "registry_model_id": self.registry_model_id,
            "registry_model_name": self.registry_model_name,
            "registry_version": self.registry_version,
            "context_length": self.context_length,
        }


def serving_of(parameters: dict[str, Any]) -> ModelRef | None:
    """The provider model a registry version names in ``parameters.serving``, if any."""
    parsed = parse_model_ref(parameters.get("serving"))
    return parsed if isinstance(parsed, ModelRef) and not parsed.is_registry else None


def stated_context_length(parameters: dict[str, Any]) -> int | None:
    """A registry version's own ``parameters.context_length`` when it is a positive integer."""
    value = parameters.get("context_length")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return None
