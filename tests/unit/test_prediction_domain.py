"""The predictions domain without I/O: requests, jobs, predictions and scoring rules."""

from __future__ import annotations

import uuid

import pytest

from domain.errors import InvalidFieldsError
from domain.predictions.forecasters import (
    BUILTINS,
    check_request,
    level_key,
    mlp_min_history,
    parse_model_ref,
)
from domain.predictions.prediction import (
    JobFinishedError,
    Prediction,
    PredictionJob,
    StaleAttemptError,
    StepScoredError,
    expected_dates,
    prediction_id,
)
from domain.predictions.scoring import score_steps, volatility_proxies


def fields_of(exc: pytest.ExceptionInfo[InvalidFieldsError]) -> set[str]:
    return {e["field"] for e in exc.value.errors}


def test_a_request_names_every_bad_field_at_once() -> None:
    with pytest.raises(InvalidFieldsError) as exc:
        check_request(31, [50, 50, 100, 0.5])
    assert fields_of(exc) == {"horizon", "levels[1]", "levels[2]", "levels[3]"}
    with pytest.raises(InvalidFieldsError) as exc:
        check_request(1, [])
    assert fields_of(exc) == {"levels"}


def test_levels_default_to_50_80_95_and_come_back_sorted() -> None:
    assert check_request(5, None) == (5, (50.0, 80.0, 95.0))
    assert check_request(30, [95, 50, 97.5]) == (30, (50.0, 95.0, 97.5))
    assert level_key(95.0) == "95" and level_key(97.5) == "97.5"


def test_model_references_are_built_ins_or_registry_models() -> None:
    assert parse_model_ref("garch_t").builtin == "garch_t"
    by_name = parse_model_ref("spx-mlp")
    assert (by_name.model, by_name.version, by_name.by_id) == ("spx-mlp", None, False)
    pinned = parse_model_ref("spx-mlp@3")
    assert (pinned.model, pinned.version) == ("spx-mlp", 3)
    model_id = uuid.uuid4()
    by_id = parse_model_ref(f"{str(model_id).upper()}@12")
    assert (by_id.model, by_id.version, by_id.by_id) == (str(model_id), 12, True)
    for bad in ("", "Spaces here", "x@", "@3", "a@b"):
        with pytest.raises(InvalidFieldsError):
            parse_model_ref(bad)


def test_a_registry_model_needs_a_full_row_of_its_features() -> None:
    assert mlp_min_history({"lags": 5, "window": 20}) == 61
    assert mlp_min_history({"lags": 5, "window": 120}) == 121
    assert BUILTINS["garch"].min_history > BUILTINS["random_walk"].min_history


def test_expected_dates_skip_weekends() -> None:
    # 2018-06-01 is a Friday
    assert expected_dates("2018-06-01", 3) == ["2018-06-04", "2018-06-05", "2018-06-06"]


def job(**changes: object) -> PredictionJob:
    fields = {
        "kind": "backtest",
        "ticker": "SP500",
        "market_data_version": 2,
        "models": [{"key": "garch"}, {"key": "ewma"}],
        "horizon": 2,
        "levels": [50.0, 95.0],
        "cutoffs": ["2018-01-02", "2018-01-03"],
        "asked": {},
        **changes,
    }
    return PredictionJob.request(**fields)


def test_a_job_records_its_progress_and_knows_what_an_attempt_made() -> None:
    j = job()
    j.start("w1", 1, "first attempt")
    made = prediction_id(j.id, "garch", "2018-01-02")
    j.record_made(1, "garch", [("2018-01-02", str(made))])
    assert j.was_made("garch", "2018-01-02")
    assert not j.was_made("ewma", "2018-01-02")
    assert j.total == 4 and j.made_by_model == {"garch": 1}
    with pytest.raises(StaleAttemptError):
        j.record_made(2, "garch", [])  # a worker whose lease was taken over
    j.start("w2", 2, "restarted")
    with pytest.raises(StaleAttemptError):
        j.complete(1, 0.1)
    j.complete(2, 0.1)
    with pytest.raises(JobFinishedError):
        j.fail("too late", 2)


def test_prediction_ids_derive_from_job_model_and_cutoff() -> None:
    job_id = uuid.uuid4()
    assert prediction_id(job_id, "garch", "2018-01-02") == prediction_id(
        str(job_id), "garch", "2018-01-02"
    )
    assert prediction_id(job_id, "garch", "2018-01-02") != prediction_id(
        job_id, "ewma", "2018-01-02"
    )


BARS = [
    ("2018-01-02", 100.0, 101.0, 99.0, 100.0, 1.0),
    ("2018-01-03", 100.0, 103.0, 99.5, 102.0, 1.0),
    ("2018-01-04", 102.0, 102.5, 97.0, 98.0, 1.0),
]
INDEX = {bar[0]: i for i, bar in enumerate(BARS)}


def prediction() -> Prediction:
    steps = [
        {
            "step": k,
            "date": d,
            "loc": 0.0,
            "scale": 0.01,
            "df": None,
            "median": 100.0,
            "volatility": 0.2,
            "bands": {"50": [99.0, 101.0], "95": [97.5, 102.5]},
        }
        for k, d in ((1, "2018-01-03"), (2, "2018-01-04"), (3, "2018-01-05"))
    ]
    return Prediction.make(
        uuid.uuid4(),
        "garch",
        "2018-01-02",
        forecaster="garch",
        model_id=None,
        model_version=None,
        ticker="SP500",
        market_data_version=2,
        last_close=100.0,
        horizon=3,
        levels=[50.0, 95.0],
        steps=steps,
        params={},
        method={},
    )


def test_steps_are_scored_once_each_with_what_the_bar_says() -> None:
    p = prediction()
    scores = score_steps(
        cutoff=p.cutoff,
        last_close=p.last_close,
        steps=p.steps,
        unscored=p.unscored_steps,
        bars=BARS,
        index=INDEX,
        proxies=volatility_proxies(BARS),
    )
    assert [s["step"] for s in scores] == [1, 2]  # step 3's bar does not exist yet
    first, second = scores
    assert first["target_date"] == "2018-01-03" and first["actual"] == 102.0
    assert first["error"] == 2.0 and first["covered"] == {"50": False, "95": True}
    assert second["actual"] == 98.0 and second["covered"] == {"50": False, "95": True}
    assert first["vol_proxy"] is not None and first["vol_proxy"] > 0
    p.score(scores, 2)
    assert p.unscored_steps == [3]
    with pytest.raises(StepScoredError):
        p.score(scores[:1], 2)
    assert p.version == 2  # the refused score appended nothing
