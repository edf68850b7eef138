"""Prompt rules without I/O: templates, model settings, version content, labels, assertions.

**Templates.** A placeholder is ``{{ name }}``: two opening braces, optional spaces or
tabs, a name (a letter or underscore, then letters, digits or underscores), optional
spaces or tabs, two closing braces. Everything else is literal text, so single braces
and JSON examples (``{"action": "BUY"}``, ``{"a": {"b": 1}}``) need no escaping. Only
``{{`` is special, escaped as in Handlebars: ``\\{{`` is a literal ``{{`` (what follows
it is plain text), and ``\\\\{{ name }}`` is one literal backslash followed by the
placeholder. Any other backslash is literal. A ``{{`` that does not open a well-formed
placeholder (``{{ 1x }}``, ``{{ a.b }}``, ``{{`` never closed) is an error naming the
field, line and column. Rendering substitutes ``str(value)`` once: a value holding
``{{ x }}`` is inserted as it is, never rendered again. Every used variable must have
a value; extra values are ignored.

Decision: a small exact grammar with ``re`` rather than a template library. The syntax
is one construct; ``str.format`` and ``string.Template`` use other syntaxes (and
``str.format`` would make every JSON brace an escape); Mustache libraries (chevron,
pystache) HTML-escape ``{{ }}`` by default, add sections and partials, and render an
unknown name as empty text, where we want an error; Jinja2 is a whole language (and
not a dependency) whose sandboxing we would then have to reason about.

**Settings** are checked all at once (every bad field named, ``FieldError``); the
bound of ``max_tokens`` is the model's context length, given at validation time.

**Versions.** ``content_hash`` covers exactly the content of a version — both
templates, the declared variables (as a sorted set) and the canonical overrides — not
its commit message, so a PUT identical to the latest version can be recognised and
append nothing. ``diff`` compares two versions as a reviewer reads them.

**Labels** name versions: ``production``, ``staging`` or a custom lowercase name;
``production`` is protected; ``latest`` is reserved (it always means the newest
version, so it is resolved, never assigned).

**Assertions** check a prompt test's output. A failing assertion is a failed result
with a detail saying why, never an exception. ``json_schema`` uses the ``jsonschema``
library: the dialect named by ``$schema`` (2020-12 when absent), ``format`` as an
annotation only (as the specification has it), and only references inside the schema
(``#...``): nothing is ever fetched. Regular expressions are Python's ``re``, searched
anywhere in the output.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.validators import Draft202012Validator, validator_for

from domain.artifacts import content_hash as _bytes_hash
from domain.errors import DomainError, InvalidFieldsError


@dataclass(frozen=True)
class FieldError:
    """One offending field of a request and what is wrong with it."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The shape ``InvalidFieldsError`` and the API's problem details carry."""
        return {"field": self.field, "message": self.message}


def invalid_fields(errors: Sequence[FieldError]) -> InvalidFieldsError:
    """The domain error (HTTP 400) naming every field of ``errors``."""
    return InvalidFieldsError([e.as_dict() for e in errors])


# --- templates ---------------------------------------------------------------------------

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}")
_NAME_RULE = "a name is a letter or underscore, then letters, digits or underscores"
_SNIPPET_CHARS = 40


class TemplateSyntaxError(DomainError):
    """A template with a malformed ``{{``; ``problems`` says where and why."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("malformed template: " + "; ".join(problems))
        self.problems = tuple(problems)


class MissingVariablesError(DomainError):
    """A template was rendered without values for some of its variables."""

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__("missing values for the variables: " + ", ".join(missing))
        self.missing = tuple(missing)


@dataclass(frozen=True)
class _Slot:
    name: str


def _where(template: str, offset: int) -> str:
    line = template.count("\n", 0, offset) + 1
    column = offset - (template.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _snippet(text: str) -> str:
    if len(text) <= _SNIPPET_CHARS:
        return text
    return text[: _SNIPPET_CHARS - 1] + "…"


def _parse(template: str) -> tuple[list[str | _Slot], list[str]]:
    """The template's literal texts and slots in order, and its problems."""
    parts: list[str | _Slot] = []
    problems: list[str] = []
    literal: list[str] = []
    pos = 0
    while (start := template.find("{{", pos)) >= 0:
        before = template[pos:start]
        if before.endswith("\\") and not before.endswith("\\\\"):
            literal.append(before[:-1] + "{{")
            pos = start + 2
            continue
        # "\\{{" is one literal backslash, then the placeholder.
        literal.append(before[:-1] if before.endswith("\\\\") else before)
        match = _PLACEHOLDER.match(template, start)
        if match is not None:
            parts.append("".join(literal))
            literal = []
            parts.append(_Slot(match.group(1)))
            pos = match.end()
            continue
        close = template.find("}}", start + 2)
        if close < 0:
            problems.append(
                f"{_where(template, start)}: '{{{{' is never closed by '}}}}' "
                "(write '\\{{' for a literal '{{')"
            )
            literal.append(template[start:])
            pos = len(template)
            break
        text = template[start : close + 2]
        problems.append(
            f"{_where(template, start)}: {_snippet(text)!r} is not a placeholder; {_NAME_RULE}"
        )
        literal.append(text)
        pos = close + 2
    literal.append(template[pos:])
    parts.append("".join(literal))
    return parts, problems


def _names_in_order(template: str) -> list[str]:
    parts, _ = _parse(template)
    return list(dict.fromkeys(p.name for p in parts if isinstance(p, _Slot)))


def variables_used(template: str) -> set[str]:
    """The names of the well-formed placeholders of ``template`` (malformed ones skipped)."""
    return set(_names_in_order(template))


def check_templates(system: str, user: str, declared: Sequence[str]) -> list[FieldError]:
    """Every error of a version's templates and declared variables, at once.

    Malformed placeholders and undeclared variables name their template
    (``system_template`` / ``user_template``); bad declarations name ``variables[i]``.
    Declared but unused variables are not errors: see ``template_warnings``.
    """
    errors: list[FieldError] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(declared):
        where = f"variables[{i}]"
        if not isinstance(name, str) or NAME.fullmatch(name) is None:
            errors.append(FieldError(where, f"{name!r} is not a variable name; {_NAME_RULE}"))
        elif name in seen:
            errors.append(FieldError(where, f"repeats variables[{seen[name]}]"))
        else:
            seen[name] = i
    for field_name, template in (("system_template", system), ("user_template", user)):
        parts, problems = _parse(template)
        errors.extend(FieldError(field_name, problem) for problem in problems)
        names = dict.fromkeys(p.name for p in parts if isinstance(p, _Slot))
        errors.extend(
            FieldError(field_name, f"uses the undeclared variable {name!r}")
            for name in names
            if name not in seen
        )
    return errors


def template_warnings(system: str, user: str, declared: Sequence[str]) -> list[FieldError]:
    """Declared variables that neither template uses: allowed, but worth a warning."""
    used = variables_used(system) | variables_used(user)
    return [
        FieldError(f"variables[{i}]", f"{name!r} is declared but used in neither template")
        for i, name in enumerate(declared)
        if isinstance(name, str) and name not in used
    ]


def render(template: str, values: Mapping[str, object]) -> str:
    """``template`` with each placeholder replaced by ``str(value)``.

    Raises ``TemplateSyntaxError`` for a malformed template and
    ``MissingVariablesError`` naming every used variable without a value.
    """
    parts, problems = _parse(template)
    if problems:
        raise TemplateSyntaxError(problems)
    missing = sorted({p.name for p in parts if isinstance(p, _Slot) and p.name not in values})
    if missing:
        raise MissingVariablesError(missing)
    return "".join(p if isinstance(p, str) else str(values[p.name]) for p in parts)


# --- model settings ----------------------------------------------------------------------

TEMPERATURE_RANGE = (0.0, 2.0)
MAX_STOP_SEQUENCES = 4
SEED_RANGE = (-(2**63), 2**63 - 1)  # what a bigint column and the providers accept
SETTING_NAMES = ("temperature", "max_tokens", "top_p", "stop", "seed")


@dataclass(frozen=True)
class ModelSettings:
    """What an LLM call is made with: a role's settings, or them merged with overrides.

    Defaults: temperature 0.7, max_tokens 1024, no top_p (the provider's), no stop
    sequences, no seed.
    """

    temperature: float = 0.7
    max_tokens: int = 1024
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``stop`` as a list."""
        values = asdict(self)
        values["stop"] = list(self.stop)
        return values


def _number(value: object) -> float | None:
    """``value`` as a finite float when it is a JSON number (not a boolean), else None."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        return None
    return number if math.isfinite(number) else None


def _integer(value: object) -> int | None:
    """``value`` as an int when it is an integral JSON number (``3`` or ``3.0``), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # exact: a large int must not go through float
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


def _temperature_problem(value: object, _limit: int | None) -> str | None:
    low, high = TEMPERATURE_RANGE
    number = _number(value)
    if number is None or not low <= number <= high:
        return f"must be a number between {low:g} and {high:g}"
    return None


def _max_tokens_problem(value: object, limit: int | None) -> str | None:
    integer = _integer(value)
    if integer is None or integer < 1:
        return "must be an integer between 1" + ("" if limit is None else f" and {limit}")
    if limit is not None and integer > limit:
        return f"must be at most {limit}, the model's context length"
    return None


def _top_p_problem(value: object, _limit: int | None) -> str | None:
    number = _number(value)
    if value is not None and (number is None or not 0 < number <= 1):
        return "must be null or a number greater than 0 and at most 1"
    return None


def _stop_problem(value: object, _limit: int | None) -> str | None:
    if not isinstance(value, list | tuple) or len(value) > MAX_STOP_SEQUENCES:
        return f"must be a list of at most {MAX_STOP_SEQUENCES} non-empty strings"
    return None


def _seed_problem(value: object, _limit: int | None) -> str | None:
    low, high = SEED_RANGE
    integer = _integer(value)
    if value is not None and (integer is None or not low <= integer <= high):
        return "must be null or a 64-bit integer"
    return None


# setting -> what is wrong with a value of it, given the max_tokens limit (None: unknown)
_SETTING_CHECKS: dict[str, Callable[[object, int | None], str | None]] = {
    "temperature": _temperature_problem,
    "max_tokens": _max_tokens_problem,
    "top_p": _top_p_problem,
    "stop": _stop_problem,
    "seed": _seed_problem,
}


def _check_settings(
    values: Mapping[str, Any], max_tokens_limit: int | None, prefix: str
) -> list[FieldError]:
    errors: list[FieldError] = []
    known = "one of " + ", ".join(SETTING_NAMES)
    for name, value in values.items():
        check = _SETTING_CHECKS.get(name)
        if check is None:
            errors.append(FieldError(prefix + name, f"is not a known setting ({known})"))
            continue
        problem = check(value, max_tokens_limit)
        if problem is not None:
            errors.append(FieldError(prefix + name, problem))
        elif name == "stop":
            errors.extend(
                FieldError(f"{prefix}stop[{i}]", "must be a non-empty string")
                for i, item in enumerate(value)
                if not isinstance(item, str) or not item
            )
    return errors


def validate_settings(
    values: Mapping[str, Any], max_tokens_limit: int, prefix: str = ""
) -> list[FieldError]:
    """Every bad field of a full or partial settings mapping; absent fields are fine.

    ``max_tokens_limit`` is the context length of the model the settings are for;
    ``prefix`` is put before each field name (``"overrides."``).
    """
    if max_tokens_limit < 1:
        raise ValueError("max_tokens_limit must be at least 1")
    return _check_settings(values, max_tokens_limit, prefix)


def canonical_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides in one spelling per value: floats as floats, integers as ints, lists.

    So ``{"temperature": 1}`` and ``{"temperature": 1.0}`` are the same content. Values
    of the wrong type are left as they are (``validate_settings`` refuses them).
    """
    canonical: dict[str, Any] = {}
    for name, value in sorted(overrides.items()):
        number, integer = _number(value), _integer(value)
        if name in ("temperature", "top_p") and number is not None:
            canonical[name] = number + 0.0  # + 0.0 turns -0.0 into 0.0
        elif name in ("max_tokens", "seed") and integer is not None:
            canonical[name] = integer
        elif name == "stop" and isinstance(value, list | tuple):
            canonical[name] = list(value)
        else:
            canonical[name] = value
    return canonical


def merge(role_settings: ModelSettings, overrides: Mapping[str, Any]) -> ModelSettings:
    """The role's settings with a version's partial overrides applied.

    The overrides should have passed ``validate_settings`` with the model's limit;
    they are checked again here (except that limit, which needs the model) and
    refused with ``InvalidFieldsError``, so a merge never builds bad settings.
    """
    errors = _check_settings(overrides, None, "")
    if errors:
        raise invalid_fields(errors)
    changes = canonical_overrides(overrides)
    if "stop" in changes:
        changes["stop"] = tuple(changes["stop"])
    return replace(role_settings, **changes)


# --- versions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptContent:
    """What a prompt version holds besides its number, author and commit message."""

    system_template: str
    user_template: str
    variables: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)


def content_hash(content: PromptContent) -> str:
    """``sha256:<hex>`` of the version's content; equal exactly when the content is."""
    document = {
        "system_template": content.system_template,
        "user_template": content.user_template,
        "variables": sorted(set(content.variables)),
        "overrides": canonical_overrides(content.overrides),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return _bytes_hash(text.encode("ascii"))


@dataclass(frozen=True)
class SettingChange:
    """An override that differs between two versions; None where it is not overridden."""

    name: str
    before: Any
    after: Any


@dataclass(frozen=True)
class PromptDiff:
    """How version ``b`` differs from version ``a``."""

    system_diff: str  # unified diff, "" when the system templates are equal
    user_diff: str
    variables_added: tuple[str, ...]
    variables_removed: tuple[str, ...]
    settings_changed: tuple[SettingChange, ...]

    @property
    def identical(self) -> bool:
        return not (
            self.system_diff
            or self.user_diff
            or self.variables_added
            or self.variables_removed
            or self.settings_changed
        )

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["variables_added"] = list(self.variables_added)
        values["variables_removed"] = list(self.variables_removed)
        values["settings_changed"] = [asdict(c) for c in self.settings_changed]
        return values


def _lines(text: str) -> list[str]:
    # Lines end at "\n" only, as git sees them (str.splitlines also splits at \r, \x0c, …).
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def unified_diff(before: str, after: str, name: str) -> str:
    """A unified diff with ``a/<name>`` and ``b/<name>`` headers, "" when equal.

    A last line without a newline is marked ``\\ No newline at end of file``, as git
    and ``patch`` expect.
    """
    out: list[str] = []
    for line in difflib.unified_diff(
        _lines(before), _lines(after), f"a/{name}", f"b/{name}", lineterm="\n"
    ):
        if line.endswith("\n"):
            out.append(line)
        else:
            out.extend((line + "\n", "\\ No newline at end of file\n"))
    return "".join(out)


def diff(a: PromptContent, b: PromptContent) -> PromptDiff:
    """What changed from ``a`` to ``b``: texts, declared variables and overrides."""
    before, after = canonical_overrides(a.overrides), canonical_overrides(b.overrides)
    order = {name: i for i, name in enumerate(SETTING_NAMES)}
    changed = tuple(
        SettingChange(name, before.get(name), after.get(name))
        for name in sorted(before.keys() | after.keys(), key=lambda n: (order.get(n, 99), n))
        if (name in before) != (name in after) or before.get(name) != after.get(name)
    )
    return PromptDiff(
        system_diff=unified_diff(a.system_template, b.system_template, "system"),
        user_diff=unified_diff(a.user_template, b.user_template, "user"),
        variables_added=tuple(sorted(set(b.variables) - set(a.variables))),
        variables_removed=tuple(sorted(set(a.variables) - set(b.variables))),
        settings_changed=changed,
    )


# --- labels ------------------------------------------------------------------------------

PRODUCTION = "production"
STAGING = "staging"
LATEST = "latest"
PROTECTED_LABELS = frozenset({PRODUCTION})
RESERVED_LABELS = frozenset({LATEST})
LABEL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def check_label_name(name: object, field_name: str = "label") -> list[FieldError]:
    """A label is lowercase: a letter, then up to 31 letters, digits, ``_`` or ``-``."""
    if not isinstance(name, str) or LABEL_NAME.fullmatch(name) is None:
        return [
            FieldError(
                field_name,
                f"{name!r} is not a label name: a lowercase letter, then up to 31 "
                "lowercase letters, digits, '_' or '-'",
            )
        ]
    if name in RESERVED_LABELS:
        return [FieldError(field_name, f"{name!r} is reserved: it always means the newest version")]
    return []


def is_protected(label: str) -> bool:
    """Whether moving or removing ``label`` needs more than the right to edit prompts."""
    return label in PROTECTED_LABELS


def check_label_target(
    version: object, latest_version: int, field_name: str = "version"
) -> list[FieldError]:
    """A label points to an existing version: numbered 1 to ``latest_version``."""
    if latest_version < 1:
        return [FieldError(field_name, "the prompt has no versions yet")]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return [FieldError(field_name, "must be a positive integer")]
    if version > latest_version:
        return [
            FieldError(field_name, f"version {version} does not exist (latest is {latest_version})")
        ]
    return []


# --- assertions --------------------------------------------------------------------------

AssertionKind = Literal[
    "contains", "not_contains", "regex", "json_valid", "json_schema", "max_chars", "max_latency_ms"
]
ASSERTION_KINDS: tuple[str, ...] = get_args(AssertionKind)
_NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry()  # no retrieve: nothing fetched


@dataclass(frozen=True)
class Assertion:
    """A check on a prompt test's output; ``json_valid`` takes no value (None)."""

    kind: str
    value: Any = None


@dataclass(frozen=True)
class AssertionResult:
    kind: str
    value: Any
    passed: bool
    detail: str  # why it failed; "" when it passed


def _walk(document: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) of nested objects, without recursion."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for key, value in item.items():
                yield key, value
                stack.append(value)
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _schema_validator_class(schema: Any) -> Any:
    """The jsonschema validator class for ``schema``'s ``$schema`` (2020-12 by default)."""
    if isinstance(schema, Mapping) and "$schema" in schema:
        return validator_for(schema, default=None)
    return Draft202012Validator


def _schema_problem(schema: Any) -> str | None:
    if not isinstance(schema, Mapping | bool):
        return "must be a JSON Schema (an object or a boolean)"
    if isinstance(schema, Mapping) and "$schema" in schema:
        dialect = schema["$schema"]
        if not isinstance(dialect, str) or validator_for(schema, default=None) is None:
            return f"$schema {dialect!r} is not a JSON Schema dialect known here"
    try:
        _schema_validator_class(schema).check_schema(schema)
    except SchemaError as exc:
        return f"is not a valid JSON Schema: {exc.message} (at {exc.json_path})"
    except RecursionError:
        return "is nested too deeply"
    return _reference_problem(schema) if isinstance(schema, Mapping) else None


def _reference_problem(schema: Mapping[str, Any]) -> str | None:
    """A reference outside the schema, or to nothing in it."""
    refs = [v for k, v in _walk(schema) if k in ("$ref", "$dynamicRef") and isinstance(v, str)]
    for ref in refs:
        if not ref.startswith("#"):
            return f"refers to {ref!r}: only references inside the schema ('#…') are allowed"
    ids = sum(1 for key, _ in _walk(schema) if key == "$id")
    if ids > ("$id" in schema):
        return None  # a nested $id moves the base of the references under it: checked in use
    dialect = schema.get("$schema")
    specification = (
        referencing.jsonschema.specification_with(dialect)
        if isinstance(dialect, str)
        else referencing.jsonschema.DRAFT202012
    )
    resolver = _NO_RETRIEVAL.resolver_with_root(specification.create_resource(schema))
    for ref in refs:
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            return f"refers to {ref!r}, which is nowhere in the schema"
    return None


def _text_problem(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a non-empty string"


def _pattern_problem(pattern: Any) -> str | None:
    if not isinstance(pattern, str) or not pattern:
        return "must be a non-empty string"
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"is not a valid regular expression: {exc}"
    return None


def _no_value_problem(value: Any) -> str | None:
    return None if value is None or value is True else "must be null (json_valid takes none)"


def _count_problem(value: Any) -> str | None:
    valid = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if valid else "must be a positive integer"


def _limit_problem(value: Any) -> str | None:
    number = _number(value)
    return None if number is not None and number > 0 else "must be a positive number"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(text: str) -> tuple[Any, str | None]:
    """The JSON value of the whole output, or the reason it is not JSON."""
    try:
        return json.loads(text, parse_constant=_reject_constant), None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return None, f"output is not valid JSON: {exc}"
    except RecursionError:
        return None, "output is not valid JSON: it is nested too deeply"


def _contains_failure(value: Any, output: str, _latency_ms: float | None) -> str:
    return "" if value in output else f"output does not contain {value!r}"


def _not_contains_failure(value: Any, output: str, _latency_ms: float | None) -> str:
    at = output.find(value)
    return "" if at < 0 else f"output contains {value!r} at character {at}"


def _regex_failure(value: Any, output: str, _latency_ms: float | None) -> str:
    found = re.search(value, output) is not None
    return "" if found else f"output does not match the regular expression {value!r}"


def _json_failure(_value: Any, output: str, _latency_ms: float | None) -> str:
    return _parse_json(output)[1] or ""


def _schema_failure(schema: Any, output: str, _latency_ms: float | None) -> str:
    instance, problem = _parse_json(output)
    if problem is not None:
        return problem
    validator = _schema_validator_class(schema)(schema, registry=_NO_RETRIEVAL)
    try:
        errors = list(validator.iter_errors(instance))
    except referencing.exceptions.Unresolvable as exc:
        return f"the schema has a reference that cannot be resolved: {exc}"
    except RecursionError:
        return "output is nested too deeply to check against the schema"
    if not errors:
        return ""
    error = best_match(errors)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"output does not match the schema at {error.json_path}: {error.message}{more}"


def _chars_failure(value: Any, output: str, _latency_ms: float | None) -> str:
    n = len(output)
    return "" if n <= value else f"output has {n} characters, more than {value}"


def _latency_failure(value: Any, _output: str, latency_ms: float | None) -> str:
    if latency_ms is None or not math.isfinite(latency_ms):
        return "the latency was not measured"
    return "" if latency_ms <= value else f"latency {latency_ms:g} ms exceeds {value:g} ms"


@dataclass(frozen=True)
class _Kind:
    value_problem: Callable[[Any], str | None]  # at definition time
    failure: Callable[[Any, str, float | None], str]  # "" when the output passes


_KINDS: dict[str, _Kind] = {
    "contains": _Kind(_text_problem, _contains_failure),
    "not_contains": _Kind(_text_problem, _not_contains_failure),
    "regex": _Kind(_pattern_problem, _regex_failure),
    "json_valid": _Kind(_no_value_problem, _json_failure),
    "json_schema": _Kind(_schema_problem, _schema_failure),
    "max_chars": _Kind(_count_problem, _chars_failure),
    "max_latency_ms": _Kind(_limit_problem, _latency_failure),
}
_KIND_CHOICES = "must be one of " + ", ".join(ASSERTION_KINDS)


def validate_assertions(
    assertions: Sequence[Assertion | Mapping[str, Any]], field_name: str = "assertions"
) -> list[FieldError]:
    """Every bad assertion at definition time, named ``assertions[i].kind`` / ``.value``:
    unknown kinds, invalid regexes and schemas, non-positive limits."""
    errors: list[FieldError] = []
    for i, item in enumerate(assertions):
        where = f"{field_name}[{i}]"
        if isinstance(item, Mapping):
            errors.extend(
                FieldError(f"{where}.{key}", "is not a known field")
                for key in sorted(set(item) - {"kind", "value"}, key=str)
            )
            kind, value = item.get("kind"), item.get("value")
        else:
            kind, value = item.kind, item.value
        rules = _KINDS.get(kind) if isinstance(kind, str) else None
        if rules is None:
            errors.append(FieldError(f"{where}.kind", _KIND_CHOICES))
            continue
        problem = rules.value_problem(value)
        if problem is not None:
            errors.append(FieldError(f"{where}.value", problem))
    return errors


def check_assertions(
    assertions: Sequence[Assertion], output_text: str, latency_ms: float | None
) -> list[AssertionResult]:
    """One result per assertion, in order; an invalid assertion is a failed result.

    ``latency_ms`` None (not measured) fails every ``max_latency_ms`` assertion.
    """
    results: list[AssertionResult] = []
    for a in assertions:
        rules = _KINDS.get(a.kind) if isinstance(a.kind, str) else None
        problem = None if rules is None else rules.value_problem(a.value)
        if rules is None:
            detail = f"invalid assertion: kind {_KIND_CHOICES}"
        elif problem is not None:
            detail = f"invalid assertion: value {problem}"
        else:
            detail = rules.failure(a.value, output_text, latency_ms)
        results.append(AssertionResult(a.kind, a.value, passed=not detail, detail=detail))
    return results
