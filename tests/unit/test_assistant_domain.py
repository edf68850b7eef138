"""The assistant's aggregates: roles and settings, prompt versions and labels (no I/O)."""

from __future__ import annotations

import re

import pytest

from domain.assistant.config import KEEP, AssistantConfig, RolePatch, check_patch
from domain.assistant.models import (
    MODEL_REF_PATTERN,
    ModelRef,
    ResolvedModel,
    parse_model_ref,
)
from domain.assistant.prompt import LabelRuleError, Prompt
from domain.assistant.prompts import FieldError, PromptContent
from domain.errors import ConflictError, InvalidFieldsError, NotFoundError

RUNS_ON = ResolvedModel("embedded:smollm2-135m-instruct", 4096, "embedded", "smollm2").runs_on()


def fields(exc: pytest.ExceptionInfo[InvalidFieldsError]) -> list[str]:
    return [e["field"] for e in exc.value.errors]


# -- model references ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("embedded:smollm2-135m-instruct", ModelRef("", "embedded", "smollm2-135m-instruct")),
        ("openai:gpt-4o-mini", ModelRef("", "openai", "gpt-4o-mini")),
        ("registry:chat-llm@3", ModelRef("", None, "chat-llm", version=3)),
        ("registry:chat-llm@production", ModelRef("", None, "chat-llm", environment="production")),
    ],
)
def test_a_model_reference_names_a_provider_model_or_a_registry_version(
    text: str, expected: ModelRef
) -> None:
    parsed = parse_model_ref(text)
    assert isinstance(parsed, ModelRef)
    assert (parsed.provider, parsed.name, parsed.version, parsed.environment) == (
        expected.provider,
        expected.name,
        expected.version,
        expected.environment,
    )
    assert re.fullmatch(MODEL_REF_PATTERN, text)


@pytest.mark.parametrize(
    "text", ["smollm2", "registry:chat", "registry:chat@beta", "Embedded:x", "embedded:", ""]
)
def test_a_malformed_model_reference_is_an_error_naming_the_field(text: str) -> None:
    parsed = parse_model_ref(text, "roles[0].model")
    assert isinstance(parsed, FieldError) and parsed.field == "roles[0].model"
    assert re.fullmatch(MODEL_REF_PATTERN, text) is None  # the schema refuses it as well


# -- roles --------------------------------------------------------------------------------


def config_with_role() -> AssistantConfig:
    config = AssistantConfig.start()
    config.add_role(
        key="risk-analyst",
        name="Risk analyst",
        description="",
        model="embedded:smollm2-135m-instruct",
        settings={"temperature": 0.2},
        limit=4096,
        reason="first",
    )
    config.collect_events()
    return config


def test_a_role_gets_its_settings_over_the_defaults() -> None:
    role = config_with_role().roles["risk-analyst"]
    assert (role.settings.temperature, role.settings.max_tokens, role.prompt_id) == (
        0.2,
        1024,
        None,
    )


def test_a_role_key_is_taken_once() -> None:
    config = config_with_role()
    with pytest.raises(ConflictError):
        config.add_role(
            key="risk-analyst", name="", description="", model="m:x", settings={}, limit=10
        )


def test_bad_settings_of_a_new_role_are_all_named() -> None:
    with pytest.raises(InvalidFieldsError) as exc:
        AssistantConfig.start().add_role(
            key="Bad Key",
            name="",
            description="",
            model="embedded:x",
            settings={"temperature": 3, "max_tokens": 5000, "top_p": 0},
            limit=4096,
        )
    assert fields(exc) == [
        "role",
        "settings.temperature",
        "settings.max_tokens",
        "settings.top_p",
    ]


def test_a_change_records_only_the_fields_that_change_with_before_and_after() -> None:
    config = config_with_role()
    changed = config.change_roles(
        [RolePatch("risk-analyst", settings={"temperature": 0.2, "max_tokens": 256})], "shorter"
    )
    assert changed == ["risk-analyst"]
    [event] = config.collect_events()
    assert isinstance(event, AssistantConfig.RoleChanged)
    assert event.changes == {"max_tokens": {"before": 1024, "after": 256}}
    assert event.reason == "shorter"


def test_a_change_to_the_same_values_records_nothing() -> None:
    config = config_with_role()
    patch = RolePatch("risk-analyst", settings={"temperature": 0.2}, prompt_id=KEEP)
    assert config.change_roles([patch], "same") == []
    assert config.collect_events() == []


def test_a_new_model_with_a_smaller_context_needs_a_smaller_max_tokens() -> None:
    role = config_with_role().roles["risk-analyst"]
    patch = RolePatch("risk-analyst", model="openai:small")
    [error] = check_patch(role, patch, 512, "roles[0].")
    assert error.field == "roles[0].settings.max_tokens"
    both = RolePatch("risk-analyst", model="openai:small", settings={"max_tokens": 500})
    assert check_patch(role, both, 512, "roles[0].") == []


def test_an_unknown_role_is_named() -> None:
    with pytest.raises(InvalidFieldsError) as exc:
        config_with_role().change_roles([RolePatch("nobody")], "x")
    assert fields(exc) == ["roles[0].role"]


# -- prompt versions ----------------------------------------------------------------------


def new_prompt() -> Prompt:
    prompt = Prompt.create(role="risk-analyst", name="system", description="")
    prompt.collect_events()
    return prompt


CONTENT = PromptContent("You are {{who}}.", "Q: {{q}}", ("who", "q"), {"temperature": 0.1})


def commit(prompt: Prompt, content: PromptContent = CONTENT, model: str | None = None) -> int:
    version, _ = prompt.commit(content, model=model, runs_on=RUNS_ON, limit=4096, message="m")
    return version.number


def test_versions_are_numbered_in_order_and_identical_content_records_nothing() -> None:
    prompt = new_prompt()
    assert commit(prompt) == 1
    assert len(prompt.collect_events()) == 1
    same = PromptContent(
        CONTENT.system_template, CONTENT.user_template, ("q", "who"), {"temperature": 0.1}
    )
    version, created = prompt.commit(same, model=None, runs_on=RUNS_ON, limit=4096, message="x")
    assert (version.number, created) == (1, False)
    assert prompt.collect_events() == []
    assert commit(prompt, model="openai:other") == 2  # another model is other content


def test_an_undeclared_variable_and_bad_overrides_are_named_together() -> None:
    content = PromptContent("{{who}}", "{{q}} {{extra}}", ("who", "q", "q"), {"max_tokens": 9000})
    with pytest.raises(InvalidFieldsError) as exc:
        new_prompt().commit(content, model=None, runs_on=RUNS_ON, limit=4096, message="m")
    assert fields(exc) == ["variables[2]", "user_template", "overrides.max_tokens"]


# -- labels -------------------------------------------------------------------------------


def labelled() -> Prompt:
    prompt = new_prompt()
    for n in range(3):
        commit(prompt, PromptContent(f"v{n + 1}", "", (), {}))
    prompt.move_label("production", 1, "first")
    prompt.move_label("production", 2, "second")
    prompt.collect_events()
    return prompt


def test_a_label_moves_to_an_existing_version_and_a_move_in_place_records_nothing() -> None:
    prompt = labelled()
    assert prompt.move_label("production", 2, "again") is False
    assert prompt.collect_events() == []
    with pytest.raises(InvalidFieldsError) as exc:
        prompt.move_label("latest", 9, "no")
    assert fields(exc) == ["label", "version"]


def test_a_rollback_moves_a_label_back_to_what_it_named_before() -> None:
    prompt = labelled()
    change = prompt.rollback("production", None, "bad answers")
    assert (change.action, change.version, change.previous_version) == ("rollback", 1, 2)
    assert prompt.labels["production"] == 1
    assert prompt.rollback("production", 2, "fixed").version == 2
    with pytest.raises(LabelRuleError):
        prompt.rollback("production", 3, "never labelled")
    with pytest.raises(LabelRuleError):
        prompt.rollback("staging", None, "never set")


def test_a_removed_label_names_nothing_and_its_history_stays() -> None:
    prompt = labelled()
    prompt.move_label("staging", 3, "try")
    prompt.remove_label("staging", "done")
    assert "staging" not in prompt.labels
    assert [(c.label, c.action, c.version) for c in prompt.label_history] == [
        ("production", "move", 1),
        ("production", "move", 2),
        ("staging", "move", 3),
        ("staging", "remove", None),
    ]
    with pytest.raises(NotFoundError):
        prompt.remove_label("staging", "again")


def test_versions_resolve_by_number_label_or_latest() -> None:
    prompt = labelled()
    assert (prompt.resolve(1), prompt.resolve("production"), prompt.resolve("latest")) == (1, 2, 3)
    with pytest.raises(NotFoundError):
        prompt.resolve("canary")
    with pytest.raises(NotFoundError):
        prompt.resolve(7)
