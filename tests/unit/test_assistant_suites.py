"""Saved suites, suite verdicts, the production gate and prompt test jobs (no I/O)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain.assistant.config import AssistantConfig, RolePatch
from domain.assistant.prompt_runs import PromptTestRun
from domain.assistant.suites import (
    MAX_JOB_CASES,
    MAX_SUITE_INPUTS,
    SYNC_CASES,
    JobFinishedError,
    PromptSuite,
    PromptTestJob,
    StaleAttemptError,
    SuiteVerdict,
    check_case_bound,
    gate_refusal,
    job_run_id,
    runs_as_job,
    suite_hash,
    suite_id,
    validate_suite,
    verdict_id,
)
from domain.errors import ConflictError, InvalidFieldsError

PROMPT = str(uuid.uuid4())
INPUTS = [{"name": "a", "values": {"name": "Ada"}}, {"values": {"name": "Bob"}}]
ASSERTIONS = [{"kind": "max_chars", "value": 100}]


def case(passed: bool, version: int = 2) -> dict[str, Any]:
    return {"version": version, "passed": passed}


def saved_suite(assertions: list[dict[str, Any]] | None = None) -> PromptSuite:
    suite = PromptSuite.create(PROMPT, "tester")
    assert suite.save(INPUTS, ASSERTIONS if assertions is None else assertions, {}, "first")
    return suite


# -- suites -------------------------------------------------------------------------------


def test_a_suite_id_is_derived_from_its_prompt() -> None:
    assert PromptSuite.create(PROMPT, "tester").id == suite_id(PROMPT) == suite_id(PROMPT)
    assert suite_id(PROMPT) != suite_id(str(uuid.uuid4()))
    assert verdict_id(PROMPT, 1) != verdict_id(PROMPT, 2)


def test_saving_records_the_content_its_hash_and_a_revision() -> None:
    suite = saved_suite()
    assert suite.revision == 1 and suite.reason == "first"
    assert suite.inputs == [
        {"name": "a", "values": {"name": "Ada"}},
        {"name": "", "values": {"name": "Bob"}},
    ]
    assert suite.suite_hash == suite_hash(suite.inputs, suite.assertions, {})
    assert [type(e).__name__ for e in suite.pending_events] == ["Created", "Saved"]


def test_saving_the_same_content_records_nothing_and_other_content_a_new_revision() -> None:
    suite = saved_suite()
    before = suite.version
    assert not suite.save(INPUTS, ASSERTIONS, {}, "same again, another reason")
    assert suite.version == before
    first_hash = suite.suite_hash
    assert suite.save(INPUTS[:1], ASSERTIONS, {"temperature": 0}, "smaller")
    assert suite.revision == 2 and suite.suite_hash != first_hash


def test_the_hash_does_not_depend_on_key_order() -> None:
    a = suite_hash([{"values": {"x": "1", "y": "2"}, "name": ""}], [], {"seed": 1, "top_p": 1})
    b = suite_hash([{"name": "", "values": {"y": "2", "x": "1"}}], [], {"top_p": 1, "seed": 1})
    assert a == b


def test_every_bad_field_of_a_suite_is_named() -> None:
    errors = validate_suite(
        [{"values": {"name": 3}}],
        [{"kind": "nope"}, {"kind": "max_chars", "value": 0}],
        {"temperature": 9},
    )
    assert {e.field for e in errors} == {
        "inputs[0].values",
        "assertions[0].kind",
        "assertions[1].value",
        "settings.temperature",
    }
    assert [e.field for e in validate_suite([], [], {})] == ["inputs"]
    too_many = [{"values": {}}] * (MAX_SUITE_INPUTS + 1)
    assert [e.field for e in validate_suite(too_many, [], {})] == ["inputs"]
    with pytest.raises(InvalidFieldsError):
        PromptSuite.create(PROMPT, "tester").save([], [], {}, "")


# -- jobs or not ---------------------------------------------------------------------------


def test_more_cases_than_the_synchronous_bound_or_asked_make_a_job() -> None:
    assert not runs_as_job(SYNC_CASES, asked=False)
    assert runs_as_job(SYNC_CASES + 1, asked=False)
    assert runs_as_job(1, asked=True)
    assert check_case_bound(1, MAX_JOB_CASES) == []
    [error] = check_case_bound(2, MAX_JOB_CASES // 2 + 1)
    assert error.field == "inputs"


# -- the gate -----------------------------------------------------------------------------


def verdict_of(suite: PromptSuite, *cases: dict[str, Any], version: int = 2) -> SuiteVerdict:
    verdict = SuiteVerdict.create(PROMPT, version)
    verdict.record(str(uuid.uuid4()), suite.reference(), list(cases))
    return verdict


def test_the_gate_needs_a_saved_suite() -> None:
    refusal = gate_refusal(PROMPT, 2, None, None)
    assert refusal is not None and "no saved suite" in str(refusal)
    assert refusal.problem_extra == {"version": 2, "suite": None, "run_id": None}


def test_the_gate_needs_a_run_against_the_version() -> None:
    suite = saved_suite()
    refusal = gate_refusal(PROMPT, 2, suite, None)
    assert refusal is not None and "none is recorded" in str(refusal)
    assert refusal.problem_extra["suite"]["revision"] == 1
    assert isinstance(refusal, ConflictError)


def test_the_gate_refuses_a_failed_latest_run_even_after_a_passing_one() -> None:
    suite = saved_suite()
    verdict = verdict_of(suite, case(True), case(True))
    assert gate_refusal(PROMPT, 2, suite, verdict) is None
    verdict.record(str(uuid.uuid4()), suite.reference(), [case(True), case(False)])
    refusal = gate_refusal(PROMPT, 2, suite, verdict)
    assert refusal is not None and "failed 1 of 2" in str(refusal)
    assert refusal.problem_extra["run_id"] == verdict.latest["run_id"]  # type: ignore[index]


def test_the_gate_refuses_a_run_of_an_older_revision_of_the_suite() -> None:
    suite = saved_suite()
    verdict = verdict_of(suite, case(True))
    suite.save(INPUTS, [{"kind": "max_chars", "value": 5}], {}, "stricter")
    refusal = gate_refusal(PROMPT, 2, suite, verdict)
    assert refusal is not None and "revision 1" in str(refusal) and "revision 2" in str(refusal)


def test_a_verdict_records_only_its_cases() -> None:
    suite = saved_suite()
    verdict = verdict_of(suite, case(True), case(False))
    assert verdict.latest is not None
    assert (verdict.latest["total"], verdict.latest["failed"]) == (2, 1)
    assert verdict.latest["suite_hash"] == suite.suite_hash


# -- the role setting ----------------------------------------------------------------------


def test_require_suite_pass_is_a_role_setting_with_its_history() -> None:
    config = AssistantConfig.start()
    role = config.add_role(
        key="tester", name="", description="", model="embedded:m", settings={}, limit=4096
    )
    assert role.require_suite_pass is False
    assert config.change_roles([RolePatch("tester", require_suite_pass=True)], "gate") == ["tester"]
    changed = config.pending_events[-1]
    assert changed.changes == {"require_suite_pass": {"before": False, "after": True}}  # type: ignore[attr-defined]
    assert config.roles["tester"].require_suite_pass is True
    assert config.change_roles([RolePatch("tester", require_suite_pass=None)], "same") == []


def test_events_stored_before_the_gate_are_upcast() -> None:
    old_added = {
        "role": "r", "name": "r", "description": "", "model": "embedded:m",
        "settings": {"temperature": 0.7, "max_tokens": 10, "top_p": None, "stop": [],
                     "seed": None},
        "prompt_id": None, "reason": "", "meta": {},
    }  # fmt: skip
    added = AssistantConfig.RoleAdded.upcast_v1_v2  # type: ignore[attr-defined]
    added(old_added)
    assert old_added["require_suite_pass"] is False
    old_run: dict[str, Any] = {"prompt_id": PROMPT}
    PromptTestRun.Recorded.upcast_v1_v2(old_run)  # type: ignore[attr-defined]
    assert old_run["suite"] is None


# -- jobs ---------------------------------------------------------------------------------


def a_job(inputs: int = 3, suite: dict[str, Any] | None = None) -> PromptTestJob:
    return PromptTestJob.request(
        prompt_id=PROMPT,
        role="tester",
        plan=[
            {"subject": {"version": 1}, "content": {}},
            {"subject": {"version": 2}, "content": {}},
        ],
        inputs=[{"name": "", "values": {}}] * inputs,
        assertions=[],
        settings={},
        suite=suite,
        reason="long",
    )


def test_a_job_runs_its_cases_in_order_and_a_takeover_skips_those_done() -> None:
    job = a_job()
    assert job.total == 6 and job.status == "queued"
    assert job.todo()[:2] == [(0, 0), (0, 1)]
    job.start("w1", 1, "first attempt")
    job.progress(1, [case(True), case(True)])
    job.start("w2", 2, "restarted")
    assert job.todo() == [(0, 2), (1, 0), (1, 1), (1, 2)]
    with pytest.raises(StaleAttemptError):
        job.progress(1, [case(True)])
    with pytest.raises(ConflictError):
        job.complete(2, str(job_run_id(job.id)))  # 2 of 6 cases run
    job.progress(2, [case(True), case(False), case(True), case(True)])
    job.complete(2, str(job_run_id(job.id)))
    assert job.status == "completed" and job.run_id == str(job_run_id(job.id))
    with pytest.raises(JobFinishedError):
        job.fail("late", 2)


def test_a_job_fails_with_its_reason_and_then_takes_no_more_work() -> None:
    job = a_job()
    job.start("w1", 1, "first attempt")
    job.fail("the provider failed", 1)
    assert (job.status, job.error, job.finished) == ("failed", "the provider failed", True)
    with pytest.raises(JobFinishedError):
        job.start("w2", 2, "again")
    assert job_run_id(job.id) == job_run_id(str(job.id))
