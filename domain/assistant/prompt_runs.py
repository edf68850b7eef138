"""A prompt test run (F11.4.3): versions of a prompt, or a draft, run against sample inputs.

One ``PromptTestRun`` aggregate per run, recorded by one event (``Recorded``) once every
case has run: what was run (each *subject*: a version, or the unsaved draft, with the
model and the effective settings it ran with), the sample inputs, the assertions, and
per case (subject × input) the rendered messages, the output, latency, token counts,
finish reason, the model the provider reports and each assertion's verdict. A case whose
input lacks a variable the templates use is a failed case with its ``error`` (the model
is not called for it). Who ran it and the correlation id are in ``meta``; why is
``reason``.

A request waits for at most ``MAX_CASES`` completions: a longer run is a job made by a
worker (``domain.assistant.suites.PromptTestJob``), which records the same run when it
ends. A run of a prompt's saved suite names it in ``suite`` (suite id, revision and
hash; None for other runs; ``class_version`` 2 added it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from domain.assistant.prompts import (
    Assertion,
    FieldError,
    MissingVariablesError,
    TemplateSyntaxError,
    check_assertions,
    render,
)
from domain.base import Aggregate
from domain.metadata import EventMeta

MAX_VERSIONS = 5
MAX_INPUTS = 20
MAX_CASES = 20
MAX_ASSERTIONS = 20


def check_case_count(subjects: int, inputs: int) -> list[FieldError]:
    """At most ``MAX_CASES`` cases (subjects × inputs) in one synchronous run."""
    if subjects * inputs > MAX_CASES:
        return [
            FieldError(
                "inputs",
                f"{subjects} version(s) × {inputs} input(s) is {subjects * inputs} cases; "
                f"a run holds at most {MAX_CASES}",
            )
        ]
    return []


def rendered(
    system_template: str, user_template: str, values: Mapping[str, object]
) -> tuple[str, str] | str:
    """Both messages, or why they cannot be rendered (a missing variable)."""
    try:
        return render(system_template, values), render(user_template, values)
    except (MissingVariablesError, TemplateSyntaxError) as exc:
        return str(exc)


def judged(
    assertions: Sequence[Assertion], output: str, latency_ms: float | None
) -> tuple[list[dict[str, Any]], bool]:
    """Each assertion's verdict as JSON, and whether all passed."""
    results = check_assertions(assertions, output, latency_ms)
    verdicts = [
        {"kind": r.kind, "value": r.value, "passed": r.passed, "detail": r.detail} for r in results
    ]
    return verdicts, all(r.passed for r in results)


class PromptTestRun(Aggregate):
    """One finished test run of a prompt; it never changes once recorded."""

    class Recorded(Aggregate.Created):
        class_version = 2
        prompt_id: str
        role: str
        subjects: list[dict[str, Any]]
        inputs: list[dict[str, Any]]
        assertions: list[dict[str, Any]]
        settings: dict[str, Any]
        cases: list[dict[str, Any]]
        reason: str
        suite: dict[str, Any] | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["suite"] = None

    def __init__(  # noqa: PLR0913
        self,
        prompt_id: str,
        role: str,
        subjects: list[dict[str, Any]],
        inputs: list[dict[str, Any]],
        assertions: list[dict[str, Any]],
        settings: dict[str, Any],
        cases: list[dict[str, Any]],
        reason: str,
        meta: EventMeta,
        suite: dict[str, Any] | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.role = role
        self.subjects = subjects
        self.inputs = inputs
        self.assertions = assertions
        self.settings = settings
        self.cases = cases
        self.reason = reason
        self.suite = suite
        self.created_by = meta.get("principal", "unknown")
        self.correlation_id = meta.get("correlation_id")

    @classmethod
    def record(  # noqa: PLR0913
        cls,
        *,
        prompt_id: str,
        role: str,
        subjects: list[dict[str, Any]],
        inputs: list[dict[str, Any]],
        assertions: list[dict[str, Any]],
        settings: dict[str, Any],
        cases: list[dict[str, Any]],
        reason: str,
        suite: dict[str, Any] | None = None,
        id: Any = None,  # noqa: A002
    ) -> PromptTestRun:
        return cls._create(
            cls.Recorded,
            id=id,
            suite=suite,
            prompt_id=prompt_id,
            role=role,
            subjects=subjects,
            inputs=inputs,
            assertions=assertions,
            settings=settings,
            cases=cases,
            reason=reason,
        )

    @property
    def passed(self) -> int:
        return sum(1 for case in self.cases if case["passed"])

    @property
    def failed(self) -> int:
        return len(self.cases) - self.passed
