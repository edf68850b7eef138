"""The results of A/B experiments over HTTP (F11.4.5): a **score** metric against a
reference computed here with scipy (Welch's t-test, Student's t intervals, the delta
method's lift interval, Holm's correction, a unit's several scores reduced to their
mean), and the **sample ratio mismatch** check on a split skewed on purpose.

Real app, real PostgreSQL. The variant of a unit is ``assign(salt, unit, weights)``
(``domain.assistant.experiments``): with the fixed salt the test knows each unit's
variant before resolving it, so it can pick the units that make a split skewed or not.
Results come from the read models: each read waits for the last write's position.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
from scipy import stats

from domain.assistant.experiments import SRM_THRESHOLD, assign
from tests.e2e.test_assistant_api import events, problem_fields, read
from tests.e2e.test_assistant_experiments import (
    EXPERIMENTS,
    RESOLVE,
    SALT,
    definition,
    outcome,
    role_with_two_versions,
)
from tests.helpers import Api

T = TypeVar("T")
X = TypeVar("X")
BATCH = 16  # concurrent requests at a time
CONFIDENCE = 0.95
REL = 1e-9  # the app sums in PostgreSQL and Polars, the reference in NumPy


class Writes:
    """The furthest ``Aimm-Position`` of the writes so far: what a read waits for."""

    def __init__(self) -> None:
        self.position = 0

    def saw(self, response: httpx.Response) -> httpx.Response:
        header = response.headers.get("aimm-position")
        if header is not None:
            context, _, position = header.partition(":")
            assert context == "assistant", header
            self.position = max(self.position, int(position))
        return response

    @property
    def last(self) -> str:
        assert self.position > 0, "no write yet"
        return f"assistant:{self.position}"


async def batched(call: Callable[[X], Awaitable[T]], items: Sequence[X]) -> list[T]:
    """``call`` of each item, ``BATCH`` at a time concurrently; the answers in order."""
    done: list[T] = []
    for i in range(0, len(items), BATCH):
        done.extend(await asyncio.gather(*(call(item) for item in items[i : i + BATCH])))
    return done


def units_of(variant: int, count: int, weights: Sequence[float], prefix: str) -> list[str]:
    """The first ``count`` unit ids ``prefix-<i>`` that ``assign`` puts in ``variant``."""
    found: list[str] = []
    i = 0
    while len(found) < count:
        unit = f"{prefix}-{i}"
        if assign(SALT, unit, weights) == variant:
            found.append(unit)
        i += 1
    return found


async def begin(api: Api, writes: Writes, body: dict[str, Any]) -> str:
    """Start the experiment; its id."""
    started = await api.client.post(EXPERIMENTS, json=body, headers=api.auth("operator"))
    assert started.status_code == 201, started.text
    writes.saw(started)
    experiment_id: str = started.json()["id"]
    return experiment_id


async def expose(api: Api, writes: Writes, units: Sequence[str]) -> dict[str, int]:
    """Resolve each unit (its first resolve records its exposure); each unit's variant.
    Resolve reads the running experiment from the read models: it waits for the start."""
    after = writes.last

    async def one(unit: str) -> tuple[str, int]:
        response = await api.client.get(
            RESOLVE,
            params={"role": "writer", "unit": unit, "wait_for": after},
            headers=api.auth("operator"),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["source"] == "experiment" and body["exposure_recorded"] is True, body
        writes.saw(response)
        return unit, int(body["variant"])

    return dict(await batched(one, units))


async def post_outcomes(
    api: Api, writes: Writes, experiment_id: str, values: Sequence[tuple[str, float]]
) -> None:
    async def one(pair: tuple[str, float]) -> None:
        unit, value = pair
        response = writes.saw(await outcome(api, experiment_id, unit, value))
        assert response.status_code == 200, response.text
        assert response.json()["value"] == value

    await batched(one, values)


async def post_raw(api: Api, experiment_id: str, unit: str, value: bytes) -> httpx.Response:
    """An outcome whose ``value`` is the raw JSON text given (what ``json=`` cannot send)."""
    return await api.client.post(
        f"{EXPERIMENTS}/{experiment_id}/outcomes",
        content=b'{"unit": "%s", "value": %s}' % (unit.encode(), value),
        headers={**api.auth("operator"), "Content-Type": "application/json"},
    )


async def results(api: Api, writes: Writes, experiment_id: str) -> dict[str, Any]:
    found: dict[str, Any] = (
        await read(api, f"{EXPERIMENTS}/{experiment_id}/results", writes.last)
    ).json()
    assert found["experiment_id"] == experiment_id
    return found


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, written out again for the reference."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return [float(a) for a in adjusted]


def check_interval(found: dict[str, Any] | None, lower: float, upper: float) -> None:
    assert found is not None
    assert found["lower"] == pytest.approx(lower, rel=REL)
    assert found["upper"] == pytest.approx(upper, rel=REL)


def check_score_variant(found: dict[str, Any], exposed: int, scores: np.ndarray) -> None:
    """n, the mean, its standard deviation and Student's t interval, against scipy."""
    m = len(scores)
    mean, sd = float(np.mean(scores)), float(np.std(scores, ddof=1))
    assert (found["n"], found["n_outcomes"], found["successes"]) == (exposed, m, None)
    assert found["estimate"] == pytest.approx(mean, rel=REL)
    assert found["std_dev"] == pytest.approx(sd, rel=REL)
    lower, upper = stats.t.interval(CONFIDENCE, m - 1, loc=mean, scale=sd / math.sqrt(m))
    check_interval(found["ci"], float(lower), float(upper))


def welch(control: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """The reference comparison of ``other`` with the control (all but the Holm fields)."""
    test = stats.ttest_ind(other, control, equal_var=False)
    m0, m1 = float(np.mean(control)), float(np.mean(other))
    v0 = float(np.var(control, ddof=1)) / len(control)
    v1 = float(np.var(other, ddof=1)) / len(other)
    difference_ci = test.confidence_interval(CONFIDENCE)
    lift = (m1 - m0) / abs(m0)
    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
    lift_half = z * math.sqrt(v1 + (m1 / m0) ** 2 * v0) / abs(m0)
    return {
        "difference": m1 - m0,
        "difference_ci": (float(difference_ci.low), float(difference_ci.high)),
        "lift": lift,
        "lift_ci": (lift - lift_half, lift + lift_half),
        "p_value": float(test.pvalue),
    }


def check_versus(found: dict[str, Any] | None, reference: dict[str, Any]) -> None:
    assert found is not None
    assert found["difference"] == pytest.approx(reference["difference"], rel=REL)
    check_interval(found["difference_ci"], *reference["difference_ci"])
    assert found["lift"] == pytest.approx(reference["lift"], rel=REL)
    check_interval(found["lift_ci"], *reference["lift_ci"])
    assert found["p_value"] == pytest.approx(reference["p_value"], rel=1e-7)


# -- a score metric -----------------------------------------------------------------------

WEIGHTS_2 = (1.0, 1.0)
NON_FINITE = (b"1e999", b"-1e999", b"NaN", b"Infinity")
WEIGHTS_3 = (1.0, 1.0, 1.0)
MEANS = (3.0, 3.6, 3.15)  # the control; a clear gain; a gain within the noise
SPREADS = (1.0, 1.3, 0.8)
EXPOSED = 44  # units per variant
EARLY = 30  # scores posted per variant before min_sample is reached
MIN_SAMPLE = 40
SILENT = 2  # exposed units of each variant that never report a score


async def test_a_score_experiment_reports_welch_results_with_holm(api: Api) -> None:
    prompt_id = await role_with_two_versions(api)
    body = definition(prompt_id, metric="score", min_sample=MIN_SAMPLE)
    # a third arm: version 2 with other settings (not a repeat of the second)
    body["variants"].append(
        {"prompt_id": prompt_id, "prompt_version": 2, "settings": {"max_tokens": 32}}
    )
    writes = Writes()
    experiment_id = await begin(api, writes, body)

    arms = [units_of(v, EXPOSED, WEIGHTS_3, f"score-{v}") for v in range(3)]
    assigned = await expose(api, writes, [unit for arm in arms for unit in arm])
    for v, arm in enumerate(arms):  # the app assigns as the documented function does
        assert {assigned[unit] for unit in arm} == {v}

    rng = np.random.default_rng(20261207)
    drawn = [rng.normal(MEANS[v], SPREADS[v], EXPOSED - SILENT).round(6).tolist() for v in range(3)]
    scores: list[dict[str, float]] = [
        dict(zip(arm, values, strict=False)) for arm, values in zip(arms, drawn, strict=True)
    ]

    # below min_sample: estimates already, but no verdict
    await post_outcomes(
        api,
        writes,
        experiment_id,
        [(u, s) for arm in scores for u, s in list(arm.items())[:EARLY]],
    )
    early = await results(api, writes, experiment_id)
    assert (early["status"], early["metric"], early["min_sample"]) == (
        "insufficient_data",
        "score",
        MIN_SAMPLE,
    )
    assert early["units"] == 3 * EXPOSED
    for v, variant in enumerate(early["variants"]):
        assert variant["index"] == v and variant["enough_data"] is False
        assert variant["share"] == pytest.approx(1 / 3)
        check_score_variant(variant, EXPOSED, np.array(list(scores[v].values())[:EARLY]))
    for variant in early["variants"][1:]:
        assert variant["versus_control"]["p_value"] is not None
        assert variant["versus_control"]["significant"] is None  # no peeking

    # the rest, with one unit of the control reporting twice: its mean counts, once
    twice = arms[0][0]
    again = 5.1
    await post_outcomes(
        api,
        writes,
        experiment_id,
        [(u, s) for arm in scores for u, s in list(arm.items())[EARLY:]] + [(twice, again)],
    )
    reduced = [dict(arm) for arm in scores]
    reduced[0][twice] = (scores[0][twice] + again) / 2
    samples = [np.array(list(arm.values())) for arm in reduced]

    shown = await results(api, writes, experiment_id)
    assert shown["status"] == "ready" and shown["units"] == 3 * EXPOSED
    assert shown["confidence"] == CONFIDENCE
    for v, variant in enumerate(shown["variants"]):
        assert variant["enough_data"] is True
        check_score_variant(variant, EXPOSED, samples[v])
    control, *others = shown["variants"]
    assert control["versus_control"] is None
    references = [welch(samples[0], samples[v]) for v in (1, 2)]
    adjusted = holm([r["p_value"] for r in references])
    for variant, reference, corrected in zip(others, references, adjusted, strict=True):
        versus = variant["versus_control"]
        check_versus(versus, reference)
        assert versus["adjusted_p_value"] == pytest.approx(corrected, rel=1e-7)
        assert versus["significant"] is (corrected < 1 - CONFIDENCE)
    # the data were chosen so that Holm matters: the clear gain stays significant, and
    # the smaller p-value is doubled (two comparisons), the larger kept
    assert [v["versus_control"]["significant"] for v in others] == [True, False]
    first, second = (r["p_value"] for r in references)
    assert adjusted == pytest.approx([2 * first, max(2 * first, second)])
    assert others[0]["versus_control"]["lift"] > 0.1
    # the unit's mean, not both scores as two units, nor the last or the first alone
    as_two = [*scores[0].values(), again]
    last = [again if u == twice else s for u, s in scores[0].items()]
    for wrong in (as_two, last, list(scores[0].values())):
        assert control["estimate"] != pytest.approx(float(np.mean(wrong)), rel=1e-6)
    assert control["n_outcomes"] == EXPOSED - SILENT


async def test_a_score_takes_any_finite_number_and_names_value_otherwise(api: Api) -> None:
    prompt_id = await role_with_two_versions(api)
    writes = Writes()
    body = definition(prompt_id, metric="score", min_sample=1)
    experiment_id = await begin(api, writes, body)
    [in_control], [in_treatment] = (units_of(v, 1, WEIGHTS_2, "value") for v in (0, 1))
    await expose(api, writes, [in_control, in_treatment])

    # no rate's 0-or-1 rule for a score
    fine = writes.saw(await outcome(api, experiment_id, in_control, 3.7))
    assert fine.status_code == 200, fine.text
    assert (fine.json()["value"], fine.json()["variant"]) == (3.7, 0)
    negative = writes.saw(await outcome(api, experiment_id, in_treatment, -12.25))
    assert negative.status_code == 200, negative.text

    count = await events(api)
    for value in (b'"3.7"', b"true", b"null"):
        refused = await post_raw(api, experiment_id, in_control, value)
        assert refused.status_code == 400, (value, refused.text)
        assert problem_fields(refused) == ["value"], value
    # JSON has no NaN nor infinity: out-of-range numbers (1e999) or the non-JSON tokens
    # Python's json writes (NaN, Infinity) are refused naming the field (the decoder
    # stops at them; api.errors finds the field), and nothing is recorded
    for value in NON_FINITE:
        refused = await post_raw(api, experiment_id, in_control, value)
        assert refused.status_code == 400, (value, refused.text)
        assert problem_fields(refused) == ["value"], (value, refused.text)
    assert await events(api) == count  # nothing recorded

    shown = await results(api, writes, experiment_id)
    assert shown["status"] == "ready" and shown["units"] == 2  # min_sample 1 each
    control, treatment = shown["variants"]
    for variant, score in ((control, 3.7), (treatment, -12.25)):
        assert (variant["n"], variant["n_outcomes"], variant["estimate"]) == (1, 1, score)
        assert variant["std_dev"] is None and variant["ci"] is None  # t needs two scores
    versus = treatment["versus_control"]
    assert versus["difference"] == pytest.approx(-12.25 - 3.7)
    assert versus["lift"] == pytest.approx((-12.25 - 3.7) / 3.7)
    assert versus["p_value"] is None and versus["significant"] is None  # no variance


# -- sample ratio mismatch ----------------------------------------------------------------


def check_srm(found: dict[str, Any], counts: Sequence[int]) -> None:
    """The check against scipy's chi-square goodness of fit to the 50/50 split."""
    total = sum(counts)
    expected = [total / 2, total / 2]
    reference = stats.chisquare(counts, expected)
    assert found["expected"] == pytest.approx(expected)
    assert found["statistic"] == pytest.approx(float(reference.statistic), rel=REL)
    assert found["p_value"] == pytest.approx(float(reference.pvalue), rel=1e-7)
    assert found["threshold"] == SRM_THRESHOLD
    assert found["mismatch"] is (float(reference.pvalue) < SRM_THRESHOLD)


async def test_a_skewed_split_is_flagged_and_a_balanced_one_is_not(api: Api) -> None:
    prompt_id = await role_with_two_versions(api)
    writes = Writes()
    experiment_id = await begin(api, writes, definition(prompt_id))
    first = units_of(0, 200, WEIGHTS_2, "srm")
    second = units_of(1, 95, WEIGHTS_2, "srm")

    # too few units to test: an expected count below 5
    few = await expose(api, writes, [first[0], first[1], first[2], second[0]])
    assert [few[u] for u in (first[0], first[1], first[2], second[0])] == [0, 0, 0, 1]
    tiny = (await results(api, writes, experiment_id))["sample_ratio"]
    assert (tiny["statistic"], tiny["p_value"], tiny["mismatch"]) == (None, None, False)
    assert tiny["expected"] == [2.0, 2.0]

    # 105 against 95: within sampling error of 50/50
    await expose(api, writes, first[3:105] + second[1:])
    balanced = await results(api, writes, experiment_id)
    assert [v["n"] for v in balanced["variants"]] == [105, 95]
    check_srm(balanced["sample_ratio"], [105, 95])
    assert balanced["sample_ratio"]["mismatch"] is False
    assert balanced["sample_ratio"]["p_value"] > 0.4

    # 200 against 95: a split no 50/50 assignment gives
    await expose(api, writes, first[105:])
    skewed = await results(api, writes, experiment_id)
    assert skewed["units"] == 295
    assert [v["n"] for v in skewed["variants"]] == [200, 95]
    check_srm(skewed["sample_ratio"], [200, 95])
    assert skewed["sample_ratio"]["mismatch"] is True
    assert skewed["sample_ratio"]["p_value"] < 1e-6
    # the flag sits beside the results, whatever their status
    assert skewed["status"] == "insufficient_data"  # 95 < min_sample 150
    assert [v["estimate"] for v in skewed["variants"]] == [0.0, 0.0]  # no outcome yet
    assert [v["share"] for v in skewed["variants"]] == [0.5, 0.5]
