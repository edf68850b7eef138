"""Prompt rules without I/O: templates, settings, version content, labels and assertions."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from domain.assistant.prompts import (
    ASSERTION_KINDS,
    PRODUCTION,
    STAGING,
    Assertion,
    AssertionResult,
    FieldError,
    MissingVariablesError,
    ModelSettings,
    PromptContent,
    SettingChange,
    TemplateSyntaxError,
    canonical_overrides,
    check_assertions,
    check_label_name,
    check_label_target,
    check_templates,
    content_hash,
    diff,
    invalid_fields,
    is_protected,
    merge,
    render,
    template_warnings,
    unified_diff,
    validate_assertions,
    validate_settings,
    variables_used,
)
from domain.errors import InvalidFieldsError

NAME_RULE = "a name is a letter or underscore, then letters, digits or underscores"


def fields_of(errors: list[FieldError]) -> list[str]:
    return [e.field for e in errors]


# --- templates ---------------------------------------------------------------------------


def test_placeholders_allow_inner_spaces_and_tabs_and_identifier_names() -> None:
    template = "{{a}} {{ b }} {{\tc_1\t}} {{  _d  }} {{ a }}"
    assert variables_used(template) == {"a", "b", "c_1", "_d"}


def test_single_braces_and_json_need_no_escaping() -> None:
    template = 'Answer as {"action": "BUY", "meta": {"ticker": "{{ ticker }}"}} {x} }}'
    assert variables_used(template) == {"ticker"}
    assert check_templates(template, "", ["ticker"]) == []
    assert render(template, {"ticker": "AAPL"}) == (
        'Answer as {"action": "BUY", "meta": {"ticker": "AAPL"}} {x} }}'
    )


def test_backslash_escapes_a_literal_double_brace() -> None:
    template = r"literal \{{ name }} then {{ name }}"
    assert variables_used(template) == {"name"}
    assert render(template, {"name": "N"}) == "literal {{ name }} then N"


def test_doubled_backslash_before_a_placeholder_is_one_literal_backslash() -> None:
    assert render(r"C:\\{{ dir }}", {"dir": "tmp"}) == "C:\\tmp"
    # a backslash anywhere else is literal
    assert render(r"a\b \n \{ {{x}}", {"x": 1}) == r"a\b \n \{ 1"


def test_check_names_each_undeclared_variable_with_its_template() -> None:
    errors = check_templates(
        "You advise on {{ ticker }} for {{ horizon }}.",
        "{{ question }} about {{ ticker }}",
        ["ticker"],
    )
    assert errors == [
        FieldError("system_template", "uses the undeclared variable 'horizon'"),
        FieldError("user_template", "uses the undeclared variable 'question'"),
    ]


def test_declared_but_unused_is_allowed_and_reported_only_as_a_warning() -> None:
    system, user, declared = "{{ a }}", "{{ b }}", ["a", "b", "unused"]
    assert check_templates(system, user, declared) == []
    assert template_warnings(system, user, declared) == [
        FieldError("variables[2]", "'unused' is declared but used in neither template")
    ]


def test_bad_and_repeated_declared_variables_are_named() -> None:
    errors = check_templates("", "", ["ok", "1x", "ok", "a-b", ""])
    assert errors == [
        FieldError("variables[1]", f"'1x' is not a variable name; {NAME_RULE}"),
        FieldError("variables[2]", "repeats variables[0]"),
        FieldError("variables[3]", f"'a-b' is not a variable name; {NAME_RULE}"),
        FieldError("variables[4]", f"'' is not a variable name; {NAME_RULE}"),
    ]


@pytest.mark.parametrize(
    "template",
    ["{{ 1x }}", "{{}}", "{{ a.b }}", "{{ a b }}", "{{{ a }}}", "{{ a\n}}", "{{ é }}"],
)
def test_malformed_placeholders_are_errors_naming_the_field(template: str) -> None:
    errors = check_templates("", template, ["a"])
    assert fields_of(errors) == ["user_template"]
    assert "is not a placeholder" in errors[0].message
    assert errors[0].message.startswith("line 1, column 1: ")


def test_malformed_placeholder_is_located_by_line_and_column() -> None:
    errors = check_templates("first line\n  then {{ 1x }} here", "", [])
    assert errors == [
        FieldError(
            "system_template", f"line 2, column 8: '{{{{ 1x }}}}' is not a placeholder; {NAME_RULE}"
        )
    ]


def test_unclosed_braces_are_errors() -> None:
    errors = check_templates("ok {{ a }}", "ask {{ a", ["a"])
    assert errors == [
        FieldError(
            "user_template",
            "line 1, column 5: '{{' is never closed by '}}' (write '\\{{' for a literal '{{')",
        )
    ]


def test_every_problem_of_both_templates_is_reported_at_once() -> None:
    errors = check_templates("{{ x }} {{ 2 }}", "{{ y }} {{", [])
    assert fields_of(errors) == ["system_template"] * 2 + ["user_template"] * 2


def test_a_long_malformed_placeholder_is_shortened_in_the_message() -> None:
    text = "{{ " + "x " * 50 + "}}"
    (error,) = check_templates(text, "", [])
    assert error.message.startswith(f"line 1, column 1: {text[:39] + '…'!r} is not a placeholder")


def test_variables_used_skips_malformed_placeholders() -> None:
    assert variables_used("{{ a }} {{ 1x }} {{ b") == {"a"}


def test_render_substitutes_str_of_each_value() -> None:
    template = "{{ ticker }} at {{ price }} ({{ ok }}, {{ none }}) {{ ticker }}"
    rendered = render(template, {"ticker": "AAPL", "price": 187.5, "ok": True, "none": None})
    assert rendered == "AAPL at 187.5 (True, None) AAPL"


def test_render_lists_every_missing_variable_and_ignores_extra_values() -> None:
    with pytest.raises(MissingVariablesError) as caught:
        render("{{ b }} {{ a }} {{ c }} {{ b }}", {"c": 1, "extra": 2})
    assert caught.value.missing == ("a", "b")
    assert str(caught.value) == "missing values for the variables: a, b"
    assert render("{{ c }}", {"c": 1, "extra": 2}) == "1"


def test_render_refuses_a_malformed_template() -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        render("{{ a }} {{ 1x }}", {"a": 1})
    assert caught.value.problems == (
        f"line 1, column 9: '{{{{ 1x }}}}' is not a placeholder; {NAME_RULE}",
    )


def test_rendered_values_are_never_rendered_again() -> None:
    assert render("{{ a }}", {"a": "{{ b }}", "b": "no"}) == "{{ b }}"


# --- settings ----------------------------------------------------------------------------

VALID_SETTINGS: dict[str, Any] = {
    "temperature": 0.2,
    "max_tokens": 4096,
    "top_p": 1,
    "stop": ["\n\n", "END"],
    "seed": 7,
}


def test_valid_full_and_partial_settings_have_no_errors() -> None:
    assert validate_settings(VALID_SETTINGS, max_tokens_limit=4096) == []
    assert validate_settings({}, max_tokens_limit=1) == []
    assert validate_settings({"temperature": 0, "top_p": None, "seed": None}, 8) == []
    assert validate_settings({"temperature": 2, "max_tokens": 1, "stop": []}, 8) == []


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("temperature", -0.1, "must be a number between 0 and 2"),
        ("temperature", 2.01, "must be a number between 0 and 2"),
        ("temperature", "0.5", "must be a number between 0 and 2"),
        ("temperature", True, "must be a number between 0 and 2"),
        ("temperature", float("nan"), "must be a number between 0 and 2"),
        ("temperature", None, "must be a number between 0 and 2"),
        ("max_tokens", 0, "must be an integer between 1 and 4096"),
        ("max_tokens", 1.5, "must be an integer between 1 and 4096"),
        ("max_tokens", 4097, "must be at most 4096, the model's context length"),
        ("top_p", 0, "must be null or a number greater than 0 and at most 1"),
        ("top_p", 1.01, "must be null or a number greater than 0 and at most 1"),
        ("stop", "END", "must be a list of at most 4 non-empty strings"),
        ("stop", ["a", "b", "c", "d", "e"], "must be a list of at most 4 non-empty strings"),
        ("seed", 1.5, "must be null or a 64-bit integer"),
        ("seed", 2**63, "must be null or a 64-bit integer"),
        ("seed", False, "must be null or a 64-bit integer"),
        ("colour", 1, "is not a known setting (one of temperature, max_tokens, top_p, stop, seed)"),
    ],
)
def test_each_out_of_range_setting_is_named(name: str, value: Any, message: str) -> None:
    assert validate_settings({**VALID_SETTINGS, name: value}, 4096) == [FieldError(name, message)]


def test_empty_or_non_string_stop_sequences_are_named_by_index() -> None:
    errors = validate_settings({"stop": ["ok", "", 3]}, 10)
    assert errors == [
        FieldError("stop[1]", "must be a non-empty string"),
        FieldError("stop[2]", "must be a non-empty string"),
    ]


def test_every_bad_setting_is_reported_at_once_with_the_prefix() -> None:
    bad = {"temperature": 3, "max_tokens": 0, "top_p": 0, "stop": [""], "seed": "x", "n": 1}
    errors = validate_settings(bad, 100, prefix="overrides.")
    assert fields_of(errors) == [
        "overrides.temperature",
        "overrides.max_tokens",
        "overrides.top_p",
        "overrides.stop[0]",
        "overrides.seed",
        "overrides.n",
    ]


def test_integral_floats_and_the_seed_bounds_are_accepted() -> None:
    assert validate_settings({"max_tokens": 10.0, "seed": 2**63 - 1}, 10) == []
    assert validate_settings({"seed": -(2**63)}, 10) == []


def test_a_limit_below_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_tokens_limit"):
        validate_settings({}, 0)


def test_merge_applies_partial_overrides_over_the_role_settings() -> None:
    role = ModelSettings(temperature=0.3, max_tokens=512, top_p=0.9, stop=("X",), seed=1)
    merged = merge(role, {"temperature": 1, "stop": ["END"], "top_p": None})
    assert merged == ModelSettings(
        temperature=1.0, max_tokens=512, top_p=None, stop=("END",), seed=1
    )
    assert isinstance(merged.temperature, float)
    assert merge(role, {}) == role


def test_merge_refuses_bad_overrides_naming_each_field() -> None:
    with pytest.raises(InvalidFieldsError) as caught:
        merge(ModelSettings(), {"temperature": 5, "max_tokens": 0, "bogus": 1})
    assert [e["field"] for e in caught.value.errors] == ["temperature", "max_tokens", "bogus"]


def test_settings_defaults_and_json_shape() -> None:
    assert ModelSettings().as_dict() == {
        "temperature": 0.7,
        "max_tokens": 1024,
        "top_p": None,
        "stop": [],
        "seed": None,
    }


def test_field_errors_become_the_domain_error_the_api_maps() -> None:
    error = invalid_fields([FieldError("temperature", "must be a number between 0 and 2")])
    assert error.errors == [{"field": "temperature", "message": "must be a number between 0 and 2"}]


# --- versions ----------------------------------------------------------------------------

BASE = PromptContent(
    system_template="You are a trading assistant.\nBe concise.\n",
    user_template="Should I buy {{ ticker }}?",
    variables=("ticker", "horizon"),
    overrides={"temperature": 0.2, "stop": ["END"]},
)


def test_identical_content_has_the_same_hash_whatever_its_spelling() -> None:
    same = PromptContent(
        system_template=BASE.system_template,
        user_template=BASE.user_template,
        variables=("horizon", "ticker"),  # order does not matter
        overrides={"stop": ("END",), "temperature": 0.2},  # neither does key order or tuple
    )
    assert content_hash(same) == content_hash(BASE)
    assert content_hash(BASE).startswith("sha256:")
    assert len(content_hash(BASE)) == len("sha256:") + 64


def test_integral_and_float_spellings_of_a_setting_hash_equal() -> None:
    one = dataclasses.replace(BASE, overrides={"temperature": 1, "max_tokens": 100.0})
    other = dataclasses.replace(BASE, overrides={"temperature": 1.0, "max_tokens": 100})
    assert content_hash(one) == content_hash(other)
    assert canonical_overrides({"temperature": -0.0}) == {"temperature": 0.0}


@pytest.mark.parametrize(
    "change",
    [
        {"system_template": "You are a trading assistant.\nBe concise."},  # newline only
        {"user_template": "Should I buy {{ticker}}?"},  # spacing inside a placeholder
        {"variables": ("ticker",)},
        {"variables": ("ticker", "horizon", "extra")},
        {"overrides": {"temperature": 0.2}},
        {"overrides": {"temperature": 0.3, "stop": ["END"]}},
        {"overrides": {"temperature": 0.2, "stop": ["END"], "top_p": None}},  # set to null
    ],
)
def test_any_change_of_content_changes_the_hash(change: dict[str, Any]) -> None:
    assert content_hash(dataclasses.replace(BASE, **change)) != content_hash(BASE)


def test_moving_text_between_fields_changes_the_hash() -> None:
    a = PromptContent(system_template="ab", user_template="")
    b = PromptContent(system_template="a", user_template="b")
    assert content_hash(a) != content_hash(b)


OLD = PromptContent(
    system_template="You are a trading assistant.\nBe concise.\nNever give advice.\n",
    user_template="Analyse {{ ticker }}",
    variables=("ticker", "style"),
    overrides={"temperature": 0.2, "max_tokens": 500, "seed": 1},
)
NEW = PromptContent(
    system_template="You are a trading assistant.\nBe precise.\nNever give advice.\n",
    user_template="Analyse {{ ticker }} over {{ horizon }}\n",
    variables=("horizon", "ticker"),
    overrides={"temperature": 0.5, "max_tokens": 500, "top_p": 0.9},
)


def test_diff_of_a_known_pair() -> None:
    result = diff(OLD, NEW)
    assert result.system_diff.splitlines() == [
        "--- a/system",
        "+++ b/system",
        "@@ -1,3 +1,3 @@",
        " You are a trading assistant.",
        "-Be concise.",
        "+Be precise.",
        " Never give advice.",
    ]
    assert result.user_diff == (
        "--- a/user\n"
        "+++ b/user\n"
        "@@ -1 +1 @@\n"
        "-Analyse {{ ticker }}\n"
        "\\ No newline at end of file\n"
        "+Analyse {{ ticker }} over {{ horizon }}\n"
    )
    assert result.variables_added == ("horizon",)
    assert result.variables_removed == ("style",)
    assert result.settings_changed == (
        SettingChange("temperature", 0.2, 0.5),
        SettingChange("top_p", None, 0.9),
        SettingChange("seed", 1, None),
    )
    assert not result.identical


def test_diff_of_equal_content_is_empty() -> None:
    result = diff(
        OLD,
        dataclasses.replace(OLD, overrides={"temperature": 0.2, "max_tokens": 500.0, "seed": 1}),
    )
    assert result.identical
    assert (result.system_diff, result.user_diff) == ("", "")


def test_diff_as_dict_is_json_ready() -> None:
    shape = diff(OLD, NEW).as_dict()
    assert shape["variables_added"] == ["horizon"]
    assert shape["settings_changed"][0] == {"name": "temperature", "before": 0.2, "after": 0.5}


def test_unified_diff_splits_lines_at_newline_only() -> None:
    # a form feed or a Unicode line separator inside a line is part of that line
    out = unified_diff("a\x0cb\nc\n", "a\x0cb\nd\n", "system")
    assert out.split("\n")[3] == " a\x0cb"
    assert "-c\n+d\n" in out


def test_unified_diff_from_and_to_empty_text() -> None:
    assert unified_diff("", "hello\n", "user") == (
        "--- a/user\n+++ b/user\n@@ -0,0 +1 @@\n+hello\n"
    )
    assert unified_diff("x", "x", "user") == ""


# --- labels ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [PRODUCTION, STAGING, "canary", "exp-1", "a", "b_2", "a" + "b" * 31]
)
def test_valid_label_names(name: str) -> None:
    assert check_label_name(name) == []


@pytest.mark.parametrize(
    "name", ["", "Production", "1st", "-a", "_a", "a b", "a.b", "a" * 33, "é", None, 3]
)
def test_invalid_label_names_are_named(name: object) -> None:
    (error,) = check_label_name(name)
    assert error.field == "label"
    assert "is not a label name" in error.message


def test_latest_is_reserved_because_it_always_means_the_newest_version() -> None:
    assert check_label_name("latest", "labels[0]") == [
        FieldError("labels[0]", "'latest' is reserved: it always means the newest version")
    ]


def test_only_production_is_protected() -> None:
    assert is_protected("production")
    assert not is_protected("staging")
    assert not is_protected("canary")


def test_a_label_points_to_an_existing_version() -> None:
    assert check_label_target(1, latest_version=3) == []
    assert check_label_target(3, latest_version=3) == []
    assert check_label_target(4, latest_version=3) == [
        FieldError("version", "version 4 does not exist (latest is 3)")
    ]
    for bad in (0, -1, True, 1.0, "1"):
        assert check_label_target(bad, 3) == [FieldError("version", "must be a positive integer")]
    assert check_label_target(1, 0) == [FieldError("version", "the prompt has no versions yet")]


# --- assertions --------------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {"enum": ["BUY", "SELL", "HOLD"]},
        "size": {"type": "number", "minimum": 0},
    },
    "required": ["action"],
}


def result(kind: str, value: Any, output: str, latency_ms: float | None = 10.0) -> AssertionResult:
    (only,) = check_assertions([Assertion(kind, value)], output, latency_ms)
    assert (only.kind, only.value) == (kind, value)
    assert only.passed == (only.detail == "")
    return only


@pytest.mark.parametrize(
    ("kind", "value", "output", "latency_ms"),
    [
        ("contains", "BUY", "I would BUY now", None),
        ("not_contains", "SELL", "I would BUY now", None),
        ("regex", r"\b(BUY|SELL)\b", "I would BUY now", None),
        ("regex", r"(?i)^i would", "I would BUY now", None),
        ("json_valid", None, ' {"action": "BUY"}\n', None),
        ("json_valid", True, "[1, 2]", None),
        ("json_schema", SCHEMA, '{"action": "HOLD", "size": 0}', None),
        ("max_chars", 5, "héllo", None),
        ("max_latency_ms", 250, "x", 250.0),
        ("max_latency_ms", 0.5, "x", 0.25),
    ],
)
def test_each_kind_passes_with_no_detail(
    kind: str, value: Any, output: str, latency_ms: float | None
) -> None:
    assert result(kind, value, output, latency_ms).detail == ""


@pytest.mark.parametrize(
    ("kind", "value", "output", "latency_ms", "detail"),
    [
        ("contains", "BUY", "I would SELL", 1.0, "output does not contain 'BUY'"),
        ("contains", "BUY", "buy", 1.0, "output does not contain 'BUY'"),
        ("not_contains", "SELL", "I would SELL", 1.0, "output contains 'SELL' at character 8"),
        (
            "regex",
            r"^\{",
            "Sure! {}",
            1.0,
            "output does not match the regular expression '^\\\\{'",
        ),
        (
            "json_valid",
            None,
            "Sure! {}",
            1.0,
            "output is not valid JSON: Expecting value: line 1 column 1 (char 0)",
        ),
        ("json_valid", None, "NaN", 1.0, "output is not valid JSON: NaN is not JSON"),
        (
            "json_valid",
            None,
            "[" * 100_000,
            1.0,
            "output is not valid JSON: it is nested too deeply",
        ),
        (
            "json_schema",
            SCHEMA,
            '{"action": "WAIT"}',
            1.0,
            "output does not match the schema at $.action: "
            "'WAIT' is not one of ['BUY', 'SELL', 'HOLD']",
        ),
        (
            "json_schema",
            SCHEMA,
            '{"size": -1}',
            1.0,
            "output does not match the schema at $: 'action' is a required property (and 1 more)",
        ),
        (
            "json_schema",
            SCHEMA,
            "{'action': 'BUY'}",
            1.0,
            "output is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        ("max_chars", 3, "héllo", 1.0, "output has 5 characters, more than 3"),
        ("max_latency_ms", 100, "x", 250.5, "latency 250.5 ms exceeds 100 ms"),
        ("max_latency_ms", 100, "x", None, "the latency was not measured"),
        ("max_latency_ms", 100, "x", float("nan"), "the latency was not measured"),
    ],
)
def test_each_kind_fails_with_a_detail(
    kind: str, value: Any, output: str, latency_ms: float | None, detail: str
) -> None:
    failed = result(kind, value, output, latency_ms)
    assert not failed.passed
    assert failed.detail == detail


def test_schema_violation_path_points_into_nested_output() -> None:
    schema = {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "number"}}}}
    failed = result("json_schema", schema, '[{"p": 1}, {"p": "high"}]')
    assert (
        failed.detail
        == "output does not match the schema at $[1].p: 'high' is not of type 'number'"
    )


def test_schema_dialect_follows_dollar_schema() -> None:
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "array",
        "items": [{"type": "string"}],  # tuple validation, draft 7 style
    }
    assert validate_assertions([Assertion("json_schema", draft7)]) == []
    assert result("json_schema", draft7, '["a", 1]').passed
    assert result("json_schema", draft7, "[1]").detail == (
        "output does not match the schema at $[0]: 1 is not of type 'string'"
    )


def test_schema_references_inside_the_schema_resolve() -> None:
    schema = {
        "$defs": {"action": {"enum": ["BUY", "SELL"]}},
        "properties": {"action": {"$ref": "#/$defs/action"}},
    }
    assert validate_assertions([Assertion("json_schema", schema)]) == []
    assert result("json_schema", schema, '{"action": "BUY"}').passed
    assert not result("json_schema", schema, '{"action": "HOLD"}').passed


def test_boolean_schemas_are_schemas() -> None:
    assert result("json_schema", True, "1").passed
    assert result("json_schema", False, "1").detail == (
        "output does not match the schema at $: False schema does not allow 1"
    )


def test_results_keep_the_order_of_the_assertions() -> None:
    assertions = [Assertion("contains", "BUY"), Assertion("max_chars", 2), Assertion("json_valid")]
    results = check_assertions(assertions, "BUY", 1.0)
    assert [(r.kind, r.passed) for r in results] == [
        ("contains", True),
        ("max_chars", False),
        ("json_valid", False),
    ]


def test_invalid_assertions_fail_instead_of_raising() -> None:
    results = check_assertions(
        [Assertion("regex", "("), Assertion("shouts", "x"), Assertion("json_schema", {"type": 5})],
        "output",
        None,
    )
    assert [r.passed for r in results] == [False, False, False]
    assert results[0].detail.startswith(
        "invalid assertion: value is not a valid regular expression"
    )
    assert results[1].detail.startswith("invalid assertion: kind must be one of contains")
    assert results[2].detail.startswith("invalid assertion: value is not a valid JSON Schema")


VALID_ASSERTIONS = [
    Assertion("contains", "BUY"),
    Assertion("not_contains", "guarantee"),
    Assertion("regex", r"^\{"),
    Assertion("json_valid"),
    Assertion("json_schema", SCHEMA),
    Assertion("max_chars", 2000),
    Assertion("max_latency_ms", 1500.5),
]


def test_every_kind_has_a_valid_definition() -> None:
    assert [a.kind for a in VALID_ASSERTIONS] == list(ASSERTION_KINDS)
    assert validate_assertions(VALID_ASSERTIONS) == []
    assert validate_assertions([{"kind": "json_valid"}, {"kind": "max_chars", "value": 1}]) == []


KINDS_RULE = (
    "must be one of contains, not_contains, regex, json_valid, json_schema, max_chars, "
    "max_latency_ms"
)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"kind": "contains", "value": ""}, "must be a non-empty string"),
        ({"kind": "not_contains", "value": 3}, "must be a non-empty string"),
        ({"kind": "regex", "value": ""}, "must be a non-empty string"),
        (
            {"kind": "regex", "value": "(BUY"},
            "is not a valid regular expression: missing ), unterminated subpattern at position 0",
        ),
        ({"kind": "json_valid", "value": "x"}, "must be null (json_valid takes none)"),
        (
            {"kind": "json_schema", "value": "object"},
            "must be a JSON Schema (an object or a boolean)",
        ),
        (
            {"kind": "json_schema", "value": {"type": "decimal"}},
            "is not a valid JSON Schema: 'decimal' is not valid under any of the given schemas "
            "(at $.type)",
        ),
        (
            {"kind": "json_schema", "value": {"minimum": "0"}},
            "is not a valid JSON Schema: '0' is not of type 'number' (at $.minimum)",
        ),
        (
            {"kind": "json_schema", "value": {"$schema": "https://example.com/mine"}},
            "$schema 'https://example.com/mine' is not a JSON Schema dialect known here",
        ),
        (
            {"kind": "json_schema", "value": {"$ref": "https://example.com/s.json"}},
            "refers to 'https://example.com/s.json': only references inside the schema ('#…') "
            "are allowed",
        ),
        (
            {"kind": "json_schema", "value": {"properties": {"a": {"$ref": "#/$defs/none"}}}},
            "refers to '#/$defs/none', which is nowhere in the schema",
        ),
        ({"kind": "max_chars", "value": 0}, "must be a positive integer"),
        ({"kind": "max_chars", "value": 1.5}, "must be a positive integer"),
        ({"kind": "max_chars", "value": True}, "must be a positive integer"),
        ({"kind": "max_latency_ms", "value": 0}, "must be a positive number"),
        ({"kind": "max_latency_ms", "value": -5}, "must be a positive number"),
        ({"kind": "max_latency_ms", "value": float("inf")}, "must be a positive number"),
        ({"kind": "max_latency_ms"}, "must be a positive number"),
    ],
)
def test_bad_assertion_values_are_named(item: dict[str, Any], message: str) -> None:
    assert validate_assertions([item]) == [FieldError("assertions[0].value", message)]


@pytest.mark.parametrize("item", [{"kind": "shouts", "value": "x"}, {"value": "x"}, {"kind": 3}])
def test_unknown_assertion_kinds_are_named(item: dict[str, Any]) -> None:
    assert validate_assertions([item]) == [FieldError("assertions[0].kind", KINDS_RULE)]


def test_every_bad_assertion_is_reported_at_once() -> None:
    errors = validate_assertions(
        [
            Assertion("contains", "ok"),
            Assertion("regex", "["),
            {"kind": "max_chars", "value": -1, "weight": 2},
            Assertion("nope", 1),
        ],
        field_name="tests[0].assertions",
    )
    assert fields_of(errors) == [
        "tests[0].assertions[1].value",
        "tests[0].assertions[2].weight",
        "tests[0].assertions[2].value",
        "tests[0].assertions[3].kind",
    ]
