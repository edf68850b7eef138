"""A/B experiments: assignment against a hashlib re-implementation, results against statsmodels."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)
from statsmodels.stats.weightstats import DescrStatsW
from statsmodels.stats.weightstats import ttest_ind as sm_ttest_ind

from domain.assistant.experiments import (
    MAX_VARIANTS,
    SRM_THRESHOLD,
    ExperimentDefinition,
    ExperimentResults,
    Variant,
    VariantSummary,
    analyse,
    analyse_summaries,
    assign,
    define_experiment,
    holm,
    sample_ratio_check,
    summarise,
    unit_point,
    validate_definition,
    wilson_interval,
)
from domain.assistant.prompts import FieldError
from domain.errors import InvalidFieldsError

ROOT = Path(__file__).resolve().parents[2]
Array = npt.NDArray[np.float64]


# -- assignment -------------------------------------------------------------------------


def reference_assign(salt: str, unit_id: str, weights: list[float]) -> int:
    """An independent reading of the documented rule, in exact rational arithmetic."""
    digest = hashlib.sha256((salt + ":" + unit_id).encode("utf-8")).digest()
    point = Fraction(int.from_bytes(digest[:8], "big") >> 11, 2**53)
    exact = [Fraction(w) for w in weights]
    total = sum(exact)
    running = Fraction(0)
    for index, weight in enumerate(exact):
        running += weight
        if point < running / total:
            return index
    raise AssertionError("the point lies below 1")


PINNED = [
    ("9f2c4e1a7b3d", "user-0", [1, 1], 1),
    ("9f2c4e1a7b3d", "user-2", [1, 1], 0),
    ("exp-salt", "user-2", [1, 2, 7], 0),
    ("exp-salt", "user-3", [1, 2, 7], 2),
    ("0f1e2d", "user-2", [0.5, 0.25, 0.25], 2),
    ("0f1e2d", "user-3", [0.5, 0.25, 0.25], 1),
    ("ünï", "user-0", [1, 1, 1, 1], 2),
    ("ünï", "user-1", [1, 1, 1, 1], 3),
    ("a1b2", "user-4", [0.1, 0.1, 0.1, 0.1, 0.6], 1),
    ("a1b2", "user-0", [0.1, 0.1, 0.1, 0.1, 0.6], 4),
]


@pytest.mark.parametrize(("salt", "unit_id", "weights", "expected"), PINNED)
def test_assignment_is_pinned_and_agrees_with_the_reference(
    salt: str, unit_id: str, weights: list[float], expected: int
) -> None:
    assert reference_assign(salt, unit_id, weights) == expected
    assert assign(salt, unit_id, weights) == expected


def test_assignment_agrees_with_the_reference_on_many_units_and_weights() -> None:
    rng = np.random.default_rng(11)
    for trial in range(20):
        weights = [float(w) for w in rng.uniform(0.05, 5, size=int(rng.integers(2, 11)))]
        salt = f"salt-{trial}"
        for i in range(200):
            unit = f"unit-{trial}-{i}"
            assert assign(salt, unit, weights) == reference_assign(salt, unit, weights)


def test_the_unit_point_is_the_top_53_bits_of_the_first_8_digest_bytes() -> None:
    digest = hashlib.sha256(b"9f2c4e1a7b3d:user-0").digest()
    h = int.from_bytes(digest[:8], "big")
    assert unit_point("9f2c4e1a7b3d", "user-0") == (h >> 11) / 2**53
    assert 0 <= unit_point("9f2c4e1a7b3d", "user-0") < 1


def test_assignment_is_the_same_in_a_fresh_interpreter_with_another_hash_seed() -> None:
    units = [f"user-{i}" for i in range(300)]
    weights = [1, 2.5, 3]
    here = [assign("cross-process", unit, weights) for unit in units]
    code = (
        "import json, sys\n"
        "from domain.assistant.experiments import assign\n"
        "units = json.loads(sys.argv[1])\n"
        "print(json.dumps([assign('cross-process', u, [1, 2.5, 3]) for u in units]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(units)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout) == here
    assert set(here) == {0, 1, 2}


@pytest.mark.parametrize("weights", [[1, 2, 7], [0.5, 0.25, 0.25], [1, 1]])
def test_assignment_respects_the_weights_within_four_standard_deviations(
    weights: list[float],
) -> None:
    units = 100_000
    counts = np.bincount(
        [assign("split-salt", f"u{i}", weights) for i in range(units)], minlength=len(weights)
    )
    for count, weight in zip(counts, weights, strict=True):
        p = weight / sum(weights)
        assert abs(count - units * p) <= 4 * math.sqrt(units * p * (1 - p))
    assert not sample_ratio_check(list(counts), weights).mismatch


def test_assignment_depends_on_the_salt() -> None:
    units = 20_000
    same = sum(
        assign("salt-a", f"u{i}", [1, 1]) == assign("salt-b", f"u{i}", [1, 1]) for i in range(units)
    )
    # independent 50/50 assignments agree half the time
    assert abs(same - units / 2) <= 4 * math.sqrt(units / 4)


def test_a_zero_weight_is_never_assigned() -> None:
    assert {assign("z", f"u{i}", [1, 0, 1]) for i in range(2000)} == {0, 2}


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1], [1, math.nan], [1, math.inf]])
def test_assignment_refuses_unusable_weights(weights: list[float]) -> None:
    with pytest.raises(ValueError, match="weight"):
        assign("s", "u", weights)


def test_assignment_refuses_an_empty_unit_id() -> None:
    with pytest.raises(ValueError, match="unit id"):
        assign("s", "", [1, 1])


# -- definitions ------------------------------------------------------------------------


def definition(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "role": "analyst",
        "variants": [
            Variant("prompt-1", 3),
            Variant("prompt-1", 4, weight=2, settings={"temperature": 0.2}),
        ],
        "unit": "user",
        "metric": "rate",
        "min_sample": 500,
    }
    return values | changes


def loose(**values: Any) -> Variant:
    """A variant of prompt p version 1 with values its types do not allow."""
    base: dict[str, Any] = {"prompt_id": "p", "prompt_version": 1}
    return Variant(**(base | values))


def fields(errors: list[FieldError]) -> list[str]:
    return [error.field for error in errors]


def test_a_valid_definition_has_no_errors_and_gets_a_fresh_salt() -> None:
    assert validate_definition(**definition()) == []
    first, second = define_experiment(**definition()), define_experiment(**definition())
    assert len(first.salt) == 32 and first.salt != second.salt
    assert first.control == Variant("prompt-1", 3)
    assert first.weights == (1.0, 2)
    assert first.assign("user-9") == assign(first.salt, "user-9", [1, 2])


def test_a_given_salt_is_kept_and_the_definition_round_trips_through_json() -> None:
    made = define_experiment(**definition(salt="fixed", unit="agent", metric="score"))
    data = json.loads(json.dumps(made.as_dict()))
    assert ExperimentDefinition.from_dict(data) == made
    assert made.salt == "fixed"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"role": "  "}, "role"),
        ({"role": "r" * 201}, "role"),
        ({"variants": [Variant("p", 1)]}, "variants"),
        ({"variants": [Variant("p", i) for i in range(1, MAX_VARIANTS + 2)]}, "variants"),
        ({"variants": "p1,p2"}, "variants"),
        ({"variants": [Variant("p", 1), {"prompt_id": "p"}]}, "variants[1]"),
        ({"variants": [Variant("p", 1), Variant("", 2)]}, "variants[1].prompt_id"),
        ({"variants": [Variant("p", 1), Variant("p", 0)]}, "variants[1].prompt_version"),
        ({"variants": [Variant("p", 1), Variant("p", True)]}, "variants[1].prompt_version"),
        ({"variants": [Variant("p", 1, weight=0), Variant("p", 2)]}, "variants[0].weight"),
        ({"variants": [Variant("p", 1, weight=-1), Variant("p", 2)]}, "variants[0].weight"),
        ({"variants": [Variant("p", 1, weight=math.inf), Variant("p", 2)]}, "variants[0].weight"),
        ({"variants": [Variant("p", 1, weight=math.nan), Variant("p", 2)]}, "variants[0].weight"),
        ({"variants": [Variant("p", 1, weight=1e7), Variant("p", 2)]}, "variants[0].weight"),
        ({"variants": [loose(weight="1"), Variant("p", 2)]}, "variants[0].weight"),
        ({"variants": [Variant("p", 1), Variant("p", 1)]}, "variants[1]"),
        (
            {"variants": [Variant("p", 1, settings={"temperature": math.nan}), Variant("p", 2)]},
            "variants[0].settings.temperature",
        ),
        (
            {"variants": [Variant("p", 1), Variant("p", 2, settings={"stop": [""]})]},
            "variants[1].settings.stop[0]",
        ),
        (
            {"variants": [Variant("p", 1), Variant("p", 2, settings={"colour": "red"})]},
            "variants[1].settings.colour",
        ),
        ({"variants": [Variant("p", 1), loose(settings={1: 0.5})]}, "variants[1].settings"),
        ({"variants": [loose(settings=[]), Variant("p", 2)]}, "variants[0].settings"),
        ({"unit": "tenant"}, "unit"),
        ({"metric": "revenue"}, "metric"),
        ({"min_sample": 0}, "min_sample"),
        ({"min_sample": 1_000_001}, "min_sample"),
        ({"min_sample": 10.5}, "min_sample"),
        ({"min_sample": True}, "min_sample"),
        ({"salt": ""}, "salt"),
        ({"salt": "s" * 129}, "salt"),
    ],
)
def test_each_bad_field_is_named(changes: dict[str, Any], field: str) -> None:
    assert fields(validate_definition(**definition(**changes))) == [field]


def test_bounds_themselves_are_accepted() -> None:
    variants = [Variant("p", i, weight=1e6 if i == 1 else 0.001) for i in range(1, 11)]
    assert validate_definition(**definition(variants=variants, min_sample=1)) == []
    assert validate_definition(**definition(min_sample=1_000_000, unit="session")) == []


def test_variants_differing_only_in_settings_are_distinct_and_order_of_settings_is_not() -> None:
    variants = [
        Variant("p", 1, settings={"temperature": 0.2, "max_tokens": 500}),
        Variant("p", 1, settings={"temperature": 0.7, "max_tokens": 500}),
        Variant("p", 1, settings={"max_tokens": 500, "temperature": 0.2}),
    ]
    errors = validate_definition(**definition(variants=variants))
    assert errors == [FieldError("variants[2]", "repeats variants[0]")]


def test_settings_are_compared_and_kept_canonical() -> None:
    variants = [
        Variant("p", 1, settings={"temperature": 1}),
        Variant("p", 1, settings={"temperature": 1.0}),
    ]
    assert fields(validate_definition(**definition(variants=variants))) == ["variants[1]"]
    made = define_experiment(**definition(variants=[variants[0], Variant("p", 2)]))
    assert made.control.settings == {"temperature": 1.0}
    assert isinstance(made.control.settings["temperature"], float)


def test_max_tokens_is_checked_against_the_models_context_length_when_known() -> None:
    variants = [Variant("p", 1), Variant("p", 2, settings={"max_tokens": 8000})]
    assert validate_definition(**definition(variants=variants)) == []
    errors = validate_definition(**definition(variants=variants), max_tokens_limit=4096)
    assert fields(errors) == ["variants[1].settings.max_tokens"]


def test_every_bad_field_is_named_at_once_and_define_refuses_them() -> None:
    bad = definition(
        role="",
        variants=[Variant("p", 1, weight=0), Variant("p", 0)],
        unit="x",
        metric="y",
        min_sample=0,
    )
    expected = [
        "role",
        "variants[0].weight",
        "variants[1].prompt_version",
        "unit",
        "metric",
        "min_sample",
    ]
    assert fields(validate_definition(**bad)) == expected
    with pytest.raises(InvalidFieldsError) as refused:
        define_experiment(**bad)
    assert [error["field"] for error in refused.value.errors] == expected


# -- results: data ----------------------------------------------------------------------


def rate_records(groups: list[tuple[int, int, int]]) -> pl.DataFrame:
    """Per variant (successes, reported failures, units without an outcome)."""
    variants: list[int] = []
    outcomes: list[float | None] = []
    for index, (successes, failures, silent) in enumerate(groups):
        variants += [index] * (successes + failures + silent)
        outcomes += [1.0] * successes + [0.0] * failures + [None] * silent
    return pl.DataFrame(
        {"variant": variants, "outcome": outcomes},
        schema={"variant": pl.Int64, "outcome": pl.Float64},
    )


def score_samples(seed: int = 3) -> list[Array]:
    rng = np.random.default_rng(seed)
    return [
        rng.normal(3.0, 1.0, 400),
        rng.normal(3.2, 1.6, 250),
        rng.normal(2.9, 0.7, 600),
    ]


def score_records(samples: list[Array], silent: tuple[int, ...] = (0, 0, 0)) -> pl.DataFrame:
    frames = [
        pl.DataFrame(
            {
                "variant": [i] * (len(values) + silent[i]),
                "outcome": [*values.tolist(), *([None] * silent[i])],
            },
            schema={"variant": pl.Int64, "outcome": pl.Float64},
        )
        for i, values in enumerate(samples)
    ]
    return pl.concat(frames)


RATE_GROUPS = [(120, 800, 80), (150, 780, 70), (95, 860, 25), (131, 800, 79)]


@pytest.fixture(scope="module")
def rate_results() -> ExperimentResults:
    return analyse(rate_records(RATE_GROUPS), metric="rate", weights=[1] * 4, min_sample=100)


# -- results: rates ---------------------------------------------------------------------


def test_a_rate_counts_exposed_units_and_units_without_an_outcome_fail(
    rate_results: ExperimentResults,
) -> None:
    for result, (successes, failures, silent) in zip(
        rate_results.variants, RATE_GROUPS, strict=True
    ):
        assert result.n == successes + failures + silent
        assert result.n_outcomes == successes + failures
        assert result.successes == successes
        assert result.estimate == pytest.approx(successes / result.n, rel=1e-15)
        assert result.share == 0.25
    assert rate_results.units == sum(map(sum, RATE_GROUPS))
    assert rate_results.status == "ready"
    assert rate_results.variants[0].versus_control is None


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_intervals_agree_with_statsmodels(confidence: float) -> None:
    for successes, n in [(0, 10), (1, 10), (10, 10), (120, 1000), (3, 7), (500, 1000)]:
        interval = wilson_interval(successes, n, confidence)
        lower, upper = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
        assert interval.lower == pytest.approx(lower, rel=1e-12, abs=1e-15)
        assert interval.upper == pytest.approx(upper, rel=1e-12, abs=1e-15)


def test_rate_intervals_in_the_results_are_wilson(rate_results: ExperimentResults) -> None:
    for result in rate_results.variants:
        assert result.ci is not None and result.successes is not None
        lower, upper = proportion_confint(result.successes, result.n, method="wilson")
        assert (result.ci.lower, result.ci.upper) == pytest.approx((lower, upper), rel=1e-12)


def test_rate_p_values_are_the_pooled_two_proportion_z_test_of_statsmodels(
    rate_results: ExperimentResults,
) -> None:
    control = rate_results.variants[0]
    for result in rate_results.variants[1:]:
        versus = result.versus_control
        assert versus is not None and versus.p_value is not None
        _, p_value = proportions_ztest([result.successes, control.successes], [result.n, control.n])
        assert versus.p_value == pytest.approx(p_value, rel=1e-10)


def test_rate_difference_and_lift_intervals_agree_with_statsmodels(
    rate_results: ExperimentResults,
) -> None:
    control = rate_results.variants[0]
    assert control.successes is not None and control.estimate is not None
    for result in rate_results.variants[1:]:
        versus = result.versus_control
        assert versus is not None and result.successes is not None and result.estimate is not None
        counts = (result.successes, result.n, control.successes, control.n)
        newcombe = confint_proportions_2indep(*counts, method="newcomb", compare="diff")
        katz = confint_proportions_2indep(*counts, method="log", compare="ratio")
        assert versus.difference == pytest.approx(result.estimate - control.estimate)
        assert versus.difference_ci is not None and versus.lift_ci is not None
        assert (versus.difference_ci.lower, versus.difference_ci.upper) == pytest.approx(
            newcombe, rel=1e-10
        )
        assert versus.lift == pytest.approx(result.estimate / control.estimate - 1, rel=1e-12)
        assert (versus.lift_ci.lower + 1, versus.lift_ci.upper + 1) == pytest.approx(
            katz, rel=1e-10
        )


def test_p_values_are_holm_adjusted_like_statsmodels(rate_results: ExperimentResults) -> None:
    comparisons = [r.versus_control for r in rate_results.variants[1:]]
    raw = [c.p_value for c in comparisons if c is not None]
    _, adjusted, _, _ = multipletests(raw, alpha=0.05, method="holm")
    assert [c.adjusted_p_value for c in comparisons if c is not None] == pytest.approx(
        list(adjusted), rel=1e-12
    )
    assert [c.significant for c in comparisons if c is not None] == [a < 0.05 for a in adjusted]


def test_holm_agrees_with_statsmodels_including_ties_and_large_values() -> None:
    rng = np.random.default_rng(8)
    for size in (1, 2, 3, 5, 9):
        for _ in range(3):  # statsmodels takes ~40 ms a call
            p = rng.uniform(0, 0.2, size)
            if size > 2:
                p[1] = p[0]  # a tie
            _, expected, _, _ = multipletests(p, method="holm")
            assert holm(list(p)) == pytest.approx(list(expected), rel=1e-12)
    assert holm([0.5, 0.6, 0.9]) == (1.0, 1.0, 1.0)


def test_no_success_in_either_variant_has_no_test_and_no_lift() -> None:
    results = analyse(
        rate_records([(0, 50, 0), (0, 60, 0)]), metric="rate", weights=[1, 1], min_sample=10
    )
    versus = results.variants[1].versus_control
    assert versus is not None
    assert versus.difference == 0.0
    assert (versus.p_value, versus.adjusted_p_value, versus.significant) == (None, None, None)
    assert (versus.lift, versus.lift_ci) == (None, None)


def test_a_treatment_without_success_has_a_lift_of_minus_one_but_no_log_interval() -> None:
    results = analyse(
        rate_records([(20, 80, 0), (0, 100, 0)]), metric="rate", weights=[1, 1], min_sample=10
    )
    versus = results.variants[1].versus_control
    assert versus is not None
    assert versus.lift == -1.0 and versus.lift_ci is None
    assert versus.p_value is not None and versus.p_value < 1e-4


# -- results: scores --------------------------------------------------------------------


def test_score_p_values_and_difference_intervals_are_welch_as_in_statsmodels_and_scipy() -> None:
    samples = score_samples()
    results = analyse(
        score_records(samples, silent=(10, 3, 0)), metric="score", weights=[1, 1, 1], min_sample=50
    )
    for values, result in zip(samples[1:], results.variants[1:], strict=True):
        versus = result.versus_control
        assert versus is not None and versus.p_value is not None
        assert versus.difference_ci is not None
        _, p_statsmodels, _ = sm_ttest_ind(values, samples[0], usevar="unequal")
        welch = stats.ttest_ind(values, samples[0], equal_var=False)
        interval = welch.confidence_interval(0.95)
        assert versus.p_value == pytest.approx(p_statsmodels, rel=1e-9)
        assert versus.p_value == pytest.approx(welch.pvalue, rel=1e-9)
        assert versus.difference == pytest.approx(values.mean() - samples[0].mean(), rel=1e-12)
        assert (versus.difference_ci.lower, versus.difference_ci.upper) == pytest.approx(
            (interval.low, interval.high), rel=1e-9
        )


def test_scores_count_only_units_with_an_outcome_and_use_the_t_interval() -> None:
    samples = score_samples()
    results = analyse(
        score_records(samples, silent=(10, 3, 0)), metric="score", weights=[1, 1, 1], min_sample=50
    )
    for values, result, silent in zip(samples, results.variants, (10, 3, 0), strict=True):
        assert (result.n, result.n_outcomes) == (len(values) + silent, len(values))
        assert result.successes is None
        assert result.estimate == pytest.approx(values.mean(), rel=1e-12)
        assert result.std_dev == pytest.approx(values.std(ddof=1), rel=1e-12)
        lower, upper = DescrStatsW(values).tconfint_mean(alpha=0.05)
        assert result.ci is not None
        assert (result.ci.lower, result.ci.upper) == pytest.approx((lower, upper), rel=1e-10)


def test_the_delta_method_lift_interval_matches_the_spread_of_simulated_lifts() -> None:
    """Half the interval over z is the lift's standard error: at the population's means and
    deviations it must match the spread of the lift over 20,000 simulated experiments."""
    (mu0, sd0, n0), (mu1, sd1, n1) = (2.0, 1.5, 300), (3.0, 3.0, 200)
    summaries = [
        VariantSummary(n0, n0, mu0 * n0, mu0, sd0),
        VariantSummary(n1, n1, mu1 * n1, mu1, sd1),
    ]
    results = analyse_summaries(summaries, metric="score", weights=[1, 1], min_sample=1)
    versus = results.variants[1].versus_control
    assert versus is not None and versus.lift_ci is not None and versus.lift is not None
    assert versus.lift == pytest.approx(0.5)
    se = (versus.lift_ci.upper - versus.lift_ci.lower) / 2 / stats.norm.ppf(0.975)
    rng = np.random.default_rng(21)
    m0 = rng.normal(mu0, sd0, (20_000, n0)).mean(axis=1)
    m1 = rng.normal(mu1, sd1, (20_000, n1)).mean(axis=1)
    assert se == pytest.approx(float(np.std(m1 / m0 - 1)), rel=0.03)
    # without the r^2 factor on the control's variance it would be 8% too small
    assert se > 1.05 * math.sqrt(sd1**2 / n1 + sd0**2 / n0) / mu0


def test_a_negative_control_mean_keeps_the_sign_of_the_lift() -> None:
    control, treatment = np.array([-2.0, -1.0, -3.0]), np.array([-1.0, -0.5, -1.5])
    results = analyse(
        score_records([control, treatment]), metric="score", weights=[1, 1], min_sample=1
    )
    versus = results.variants[1].versus_control
    assert versus is not None and versus.lift is not None
    assert versus.lift == pytest.approx(0.5)  # from -2 to -1: higher by half its size


def test_constant_scores_have_no_test() -> None:
    results = analyse(
        score_records([np.full(20, 4.0), np.full(20, 4.0)]),
        metric="score",
        weights=[1, 1],
        min_sample=5,
    )
    versus = results.variants[1].versus_control
    assert versus is not None and versus.difference == 0.0
    assert (versus.p_value, versus.difference_ci, versus.significant) == (None, None, None)


# -- status, sample ratio, inputs -------------------------------------------------------


def test_not_enough_data_until_every_variant_has_the_minimum_sample() -> None:
    below = analyse(
        rate_records([(30, 70, 0), (60, 39, 0)]), metric="rate", weights=[1, 1], min_sample=100
    )
    assert below.status == "insufficient_data"
    assert [v.enough_data for v in below.variants] == [True, False]
    versus = below.variants[1].versus_control
    assert versus is not None and versus.p_value is not None and versus.p_value < 1e-4
    assert versus.significant is None  # not until the results are ready
    at = analyse(
        rate_records([(30, 70, 0), (60, 40, 0)]), metric="rate", weights=[1, 1], min_sample=100
    )
    assert at.status == "ready"
    assert at.variants[1].versus_control is not None
    assert at.variants[1].versus_control.significant is True


def test_a_score_needs_the_minimum_sample_of_units_with_an_outcome() -> None:
    samples = [np.arange(60.0), np.arange(60.0) + 1]
    results = analyse(
        score_records(samples, silent=(50, 50)), metric="score", weights=[1, 1], min_sample=100
    )
    assert [v.n for v in results.variants] == [110, 110]
    assert results.status == "insufficient_data"


def test_no_records_give_empty_results_not_errors() -> None:
    empty = pl.DataFrame(schema={"variant": pl.Int64, "outcome": pl.Float64})
    for metric in ("rate", "score"):
        results = analyse(empty, metric=metric, weights=[1, 1, 2], min_sample=1)
        assert results.status == "insufficient_data"
        assert results.units == 0
        assert all(v.estimate is None and v.ci is None for v in results.variants)
        versus = results.variants[2].versus_control
        assert versus is not None and versus.p_value is None
        assert results.sample_ratio.p_value is None and not results.sample_ratio.mismatch
    assert analyse(pl.DataFrame(), metric="rate", weights=[1, 1], min_sample=1).units == 0


def test_a_skewed_split_is_a_sample_ratio_mismatch_and_a_fair_one_is_not() -> None:
    skewed = sample_ratio_check([5_000, 5_400], [1, 1])
    statistic, p_value = stats.chisquare([5_000, 5_400])
    assert skewed.statistic == pytest.approx(statistic, rel=1e-12)
    assert skewed.p_value == pytest.approx(p_value, rel=1e-9)
    assert skewed.p_value is not None and skewed.p_value < SRM_THRESHOLD and skewed.mismatch
    fair = sample_ratio_check([5_000, 5_080], [1, 1])
    assert fair.p_value is not None and fair.p_value > 0.1 and not fair.mismatch


def test_the_sample_ratio_check_uses_the_weights() -> None:
    counts, weights = [1_020, 1_950, 7_030], [1, 2, 7]
    check = sample_ratio_check(counts, weights)
    _, p_value = stats.chisquare(counts, [1_000, 2_000, 7_000])
    assert check.expected == pytest.approx((1_000, 2_000, 7_000))
    assert check.p_value == pytest.approx(p_value, rel=1e-9)
    assert not check.mismatch
    assert sample_ratio_check(counts, [1, 1, 1]).mismatch


def test_the_sample_ratio_check_waits_for_expected_counts_of_five() -> None:
    assert sample_ratio_check([0, 9], [1, 1]).p_value is None
    assert sample_ratio_check([0, 10], [1, 1]).mismatch is False  # p = 0.0016: no flag
    assert sample_ratio_check([0, 30], [1, 1]).mismatch is True


def test_results_flag_a_sample_ratio_mismatch_from_the_records() -> None:
    results = analyse(
        rate_records([(500, 4_500, 0), (540, 4_860, 0)]),
        metric="rate",
        weights=[1, 1],
        min_sample=100,
    )
    assert results.sample_ratio.mismatch


def test_summaries_give_the_same_results_as_records() -> None:
    records = rate_records(RATE_GROUPS)
    summaries = summarise(records, 4, "rate")
    outcomes = np.array([1.0] * 120 + [0.0] * 800)
    first = summaries[0]
    assert (first.n, first.n_outcomes, first.total) == (1000, 920, 120.0)
    assert (first.mean, first.std_dev) == pytest.approx((outcomes.mean(), outcomes.std(ddof=1)))
    from_records = analyse(records, metric="rate", weights=[1] * 4, min_sample=100)
    assert (
        analyse_summaries(summaries, metric="rate", weights=[1] * 4, min_sample=100) == from_records
    )


def test_results_hold_no_non_finite_numbers(rate_results: ExperimentResults) -> None:
    samples = [np.array([1.0]), np.array([2.0, 2.0]), np.array([0.0, 1.0, 2.0])]
    for results in (
        rate_results,
        analyse(score_records(samples), metric="score", weights=[1, 1, 1], min_sample=1),
        analyse(
            score_records([np.zeros(5), np.ones(5)]), metric="score", weights=[1, 1], min_sample=1
        ),
    ):
        json.dumps(dataclasses.asdict(results), allow_nan=False)


@pytest.mark.parametrize(
    ("records", "metric", "message"),
    [
        (pl.DataFrame({"variant": [0, 2], "outcome": [1.0, 0.0]}), "rate", "variant"),
        (pl.DataFrame({"variant": [0, -1], "outcome": [1.0, 0.0]}), "rate", "variant"),
        (pl.DataFrame({"variant": [0, None], "outcome": [1.0, 0.0]}), "rate", "variant"),
        (pl.DataFrame({"variant": [0, 1], "outcome": [1.0, 0.5]}), "rate", "0 or 1"),
        (pl.DataFrame({"variant": [0, 1], "outcome": [1.0, math.nan]}), "score", "finite"),
        (pl.DataFrame({"variant": [0, 1]}), "rate", "outcome"),
        (
            pl.DataFrame({"unit_id": ["a", "a"], "variant": [0, 1], "outcome": [1.0, 0.0]}),
            "rate",
            "one row per unit",
        ),
    ],
)
def test_malformed_records_are_refused(records: pl.DataFrame, metric: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        analyse(records, metric=metric, weights=[1, 1], min_sample=1)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, math.nan])
def test_a_confidence_outside_zero_and_one_is_a_named_field(confidence: float) -> None:
    with pytest.raises(InvalidFieldsError) as refused:
        analyse(
            rate_records([(1, 1, 0), (1, 1, 0)]),
            metric="rate",
            weights=[1, 1],
            min_sample=1,
            confidence=confidence,
        )
    assert [error["field"] for error in refused.value.errors] == ["confidence"]


def test_boolean_outcomes_are_accepted_for_a_rate() -> None:
    records = pl.DataFrame({"variant": [0, 0, 1, 1], "outcome": [True, None, False, True]})
    results = analyse(records, metric="rate", weights=[1, 1], min_sample=1)
    assert [(v.n, v.n_outcomes, v.successes) for v in results.variants] == [(2, 1, 1), (2, 2, 1)]


def test_the_definition_analyses_with_its_own_metric_weights_and_minimum() -> None:
    made = define_experiment(**definition(min_sample=100))
    records = rate_records([(30, 70, 0), (70, 130, 0)])
    assert made.analyse(records) == analyse(records, metric="rate", weights=[1, 2], min_sample=100)
