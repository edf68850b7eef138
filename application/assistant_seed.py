"""The assistant's first roles and prompts, so a new installation's settings page is not empty.

``seed_assistant`` runs ordinary commands (events) as the system principal
``system:seed``: it adds each seed role that is missing, creates its prompt if the role
has none of that name, commits the seed text as version 1 only into a prompt without
versions, labels it ``production`` only when nothing is, and sets the role's prompt only
when the role runs none. So it is idempotent (a second run appends nothing) and never
overwrites what someone changed since; each step checks the state it would change, so a
run cut short is completed by the next one. ``aimm dev`` runs it at every start;
``aimm seed`` runs it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from application.assistant import AssistantApplication
from application.base import Response
from application.registry import RegistryApplication
from domain.assistant.config import RolePatch
from domain.assistant.prompts import PRODUCTION, PromptContent
from domain.metadata import acting_as

SEED_PRINCIPAL = "system:seed"
SEED_MODEL = "embedded:smollm2-135m-instruct"
SEED_PROMPT = "system"
_REASON = "seed: the assistant's first roles"


@dataclass(frozen=True)
class SeedRole:
    key: str
    name: str
    description: str
    settings: dict[str, Any]
    system_template: str
    user_template: str
    variables: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)


SEED_ROLES: tuple[SeedRole, ...] = (
    SeedRole(
        key="trading-assistant",
        name="Trading assistant",
        description="Answers a trader's questions about markets, orders and positions.",
        settings={"temperature": 0.4, "max_tokens": 768},
        system_template=(
            "You are the trading assistant of {{desk}}. Answer questions about markets, "
            "orders and positions clearly and briefly. Say when you are unsure, never "
            "invent prices, and never give personal investment advice. Mention the risks "
            "(fees, liquidity, leverage) that matter to the question."
        ),
        user_template="{{question}}",
        variables=("desk", "question"),
    ),
    SeedRole(
        key="risk-analyst",
        name="Risk analyst",
        description="Explains the risk of a position or portfolio: exposures, drawdowns, limits.",
        settings={"temperature": 0.2, "max_tokens": 1024, "seed": 7},
        system_template=(
            "You are a cautious risk analyst. Explain exposures, volatility, drawdowns and "
            "limit breaches in plain words, with the figures you are given and no others. "
            "End with the one action that reduces the largest risk."
        ),
        user_template="Portfolio:\n{{portfolio}}\n\nQuestion: {{question}}",
        variables=("portfolio", "question"),
    ),
    SeedRole(
        key="research-summariser",
        name="Research summariser",
        description="Summarises research notes and news into a few factual bullet points.",
        settings={"temperature": 0.3, "max_tokens": 512},
        system_template=(
            "You summarise financial research for busy traders. Write at most {{bullets}} "
            "bullet points, each one fact from the text with its figure. No opinions, no "
            "facts that are not in the text."
        ),
        user_template="Summarise this:\n\n{{text}}",
        variables=("bullets", "text"),
    ),
    SeedRole(
        key="support-agent",
        name="Support agent",
        description="Helps users of the trading platform with their account and the product.",
        settings={"temperature": 0.5, "max_tokens": 512},
        system_template=(
            "You are the friendly support agent of a trading platform. Help with accounts, "
            "orders, fees and the product's features. Never ask for passwords or keys. When "
            "you cannot help, say how to reach a person."
        ),
        user_template="Customer {{customer_name}} asks: {{message}}",
        variables=("customer_name", "message"),
    ),
)


def _ignore(*_: Any) -> Response:
    return 200, None  # the seed stores no response (it uses no Idempotency-Key)


def seed_assistant(
    assistant: AssistantApplication,
    registry: RegistryApplication,
    roles: tuple[SeedRole, ...] = SEED_ROLES,
) -> list[str]:
    """Add what is missing of the seed roles and prompts; what was done, one line each."""
    done: list[str] = []
    with acting_as(SEED_PRINCIPAL, "assistant-seed"):
        for seed in roles:
            done += _seed_role(assistant, registry, seed)
    return done


def _seed_role(
    assistant: AssistantApplication, registry: RegistryApplication, seed: SeedRole
) -> list[str]:
    done: list[str] = []
    config = assistant.get_config()
    if config is None or config.get_role(seed.key) is None:
        assistant.add_role(
            key=seed.key,
            name=seed.name,
            description=seed.description,
            model=SEED_MODEL,
            settings=seed.settings,
            reason=_REASON,
            registry=registry,
            respond=_ignore,
        )
        done.append(f"role {seed.key} added")
    prompt_id = assistant.find_prompt(seed.key, SEED_PROMPT)
    if prompt_id is None:
        created = assistant.create_prompt(
            role=seed.key,
            name=SEED_PROMPT,
            description=f"The system prompt of the {seed.name.lower()}.",
            respond=lambda prompt: (201, str(prompt.id)),
        )
        prompt_id = UUID(created.value.body)
        done.append(f"prompt {seed.key}/{SEED_PROMPT} created")
    prompt = assistant.get_prompt(prompt_id)
    if prompt.latest_version is None:
        content = PromptContent(
            seed.system_template, seed.user_template, seed.variables, seed.overrides
        )
        assistant.commit_version(
            prompt_id,
            content,
            model=None,
            message="seed: first version",
            registry=registry,
            respond=_ignore,
        )
        done.append(f"prompt {seed.key}/{SEED_PROMPT} version 1 committed")
        prompt = assistant.get_prompt(prompt_id)
    if PRODUCTION not in prompt.labels and prompt.latest_version is not None:
        assistant.move_label(prompt_id, PRODUCTION, prompt.latest_version, _REASON, respond=_ignore)
        done.append(f"prompt {seed.key}/{SEED_PROMPT} labelled {PRODUCTION}")
    config = assistant.get_config()
    role = config.get_role(seed.key) if config is not None else None
    if role is not None and role.prompt_id is None:
        assistant.update_config(
            [RolePatch(seed.key, prompt_id=str(prompt_id))],
            reason=_REASON,
            registry=registry,
            respond=_ignore,
        )
        done.append(f"role {seed.key} runs prompt {SEED_PROMPT}")
    return done
