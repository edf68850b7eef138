"""A/B experiments on prompt variants: sticky assignment, definition rules and results.

Pure: definitions and per-unit records (a Polars frame) in, frozen dataclasses out.
No I/O. (``new_salt`` draws from the OS's random source; call it only where the
experiment is created, and record the salt in the creating event.)

An experiment tests 2 to 10 **variants** of an assistant ``role``: each a prompt
version (``prompt_id``, ``prompt_version``) with optional settings overrides and a
positive ``weight`` (its share of traffic is weight / sum of weights). The first
variant is the **control**. Units of assignment (``unit``) are users, sessions or
agents; each is assigned once and for good by ``assign`` (below). The ``metric`` is a
``rate`` (each unit reports success 1 or failure 0) or a ``score`` (a number per
unit). ``min_sample`` is the sample every variant needs before the results count.
The ``salt`` is drawn at creation and never changes, nor do the weights: changing
either would move units between variants.

Assignment (``assign(salt, unit_id, weights)``), exactly, so any language can
reproduce it:

1. b = SHA-256 of the UTF-8 bytes of ``salt + ":" + unit_id`` (no Unicode
   normalisation; the salt is fixed per experiment, so the separator cannot make two
   unit ids collide).
2. h = the first 8 bytes of b as an unsigned big-endian 64-bit integer; its top 53 bits
   give the point u = (h >> 11) / 2**53, exactly representable as an IEEE-754 double,
   0 <= u < 1. (h / 2**64 would round up to 1.0 for the largest h.)
3. With the weights as doubles w_0 .. w_{k-1}, the running sums c_i = w_0 + ... + w_i
   are added left to right in double precision (not a compensated sum, as
   Python 3.12's ``sum`` is), W = c_{k-1}, and the thresholds are t_i = c_i / W (so
   t_{k-1} = 1.0 exactly).
4. The variant is the smallest i with u < t_i (a zero weight is never chosen).

Python's ``hash`` is never used: it is salted per process.

Definitions (``validate_definition``, ``define_experiment``): every offending field is
named at once, as the context's ``FieldError`` (``domain.assistant.prompts``;
``define_experiment`` raises them as ``InvalidFieldsError``, HTTP 400): ``role``
(non-blank, at most 200 characters), ``variants`` (2 to 10), ``variants[i].prompt_id``
(non-blank, at most 200), ``variants[i].prompt_version`` (an integer >= 1),
``variants[i].weight`` (a finite number, 0 < w <= 1e6, so sums cannot overflow),
``variants[i].settings`` (a mapping of model-setting overrides, each
``variants[i].settings.<name>`` checked by the prompts' settings rules: with
``max_tokens_limit``, the model's context length, also max_tokens against it),
``variants[i]`` repeating an earlier one (same prompt, version and canonical settings),
``unit``, ``metric``, ``min_sample`` (an integer from 1 to 1,000,000) and ``salt`` (when
given: non-empty, at most 128 characters). A definition keeps the settings canonical
(``canonical_overrides``: ``1`` and ``1.0`` are one temperature).

Results (``analyse(records, ...)``, or ``summarise`` then ``analyse_summaries``):
``records`` has one row per exposed unit: ``variant`` (its index) and ``outcome``
(null while the unit has reported none); other columns are ignored, except that a
``unit_id`` column must not repeat. A unit that reports several outcomes is reduced to
one by the caller (for a rate, 1 if it ever succeeded; for a score, its mean). For each
variant, at confidence level c (default 0.95, alpha = 1 - c, z = the normal 1 - alpha/2
quantile):

- ``n``: exposed units; ``n_outcomes``: units that reported an outcome.
- ``rate``: outcomes must be 0 or 1. The rate is the conversion rate over *exposed*
  units: ``successes`` / n, a unit without an outcome counting as a failure (a unit
  that never converts often never reports). Its interval is Wilson's score interval
  (Wilson 1927, *JASA* 22, 209-212), the one recommended over Wald's for its coverage
  near 0 and 1 (Brown, Cai & DasGupta 2001, *Statistical Science* 16(2), 101-133).
- ``score``: only units with an outcome count; the estimate is their mean, ``std_dev``
  their sample standard deviation (n - 1), and the interval Student's t interval
  mean +- t_{1-alpha/2, m-1} sd / sqrt(m) over m = n_outcomes >= 2.
- the sample that must reach ``min_sample`` (``enough_data``) is n for a rate and
  n_outcomes for a score. ``status`` is ``insufficient_data`` until every variant has it,
  then ``ready``.

Each other variant against the control (``versus_control``; the control's is None):

- ``difference`` = estimate - control's estimate, with an interval: for rates
  Newcombe's hybrid score interval from the two Wilson intervals (Newcombe 1998,
  *Statistics in Medicine* 17, 873-890, method 10); for scores Welch's interval
  difference +- t_{1-alpha/2, df} se (below).
- ``lift`` = difference / |control's estimate| (the relative difference; its sign is the
  difference's; None when the control's estimate is 0). Interval: for rates, Katz's
  log interval for the risk ratio (Katz et al. 1978, *Biometrics* 34, 469-474)
  exp(ln(p1/p0) +- z sqrt(1/x1 - 1/n1 + 1/x0 - 1/n0)) - 1, which needs successes in
  both; for scores, the delta method for a ratio of independent means (as in Deng,
  Knoblich & Lu 2018, "Applying the delta method in metric analytics", KDD):
  lift +- z sqrt(v1 + r^2 v0) / |m0|, r = m1/m0, v = sd^2/m.
- ``p_value``, two-sided, H0: no difference. Rates: the two-proportion z-test with the
  pooled proportion p = (x0 + x1)/(n0 + n1), z = (p1 - p0) / sqrt(p(1 - p)(1/n0 + 1/n1)).
  Scores: Welch's t-test, se^2 = v0 + v1, t = difference / se, Welch-Satterthwaite df =
  se^4 / (v0^2/(m0 - 1) + v1^2/(m1 - 1)). None when there is no variance to test
  against (se = 0: say, no success yet in either variant) or too few units.
- ``adjusted_p_value``: Holm's step-down correction (Holm 1979, *Scand. J. Statist.*
  6, 65-70) over the k - 1 comparisons with the control, a missing p-value counting as
  1 in the family (conservative). ``significant``: adjusted p < alpha, and None until
  ``status`` is ``ready`` (looking early and often inflates false positives).

Sample ratio mismatch (``sample_ratio``): Pearson's chi-square goodness of fit of the
exposure counts n_i against N w_i / W (k - 1 degrees of freedom). A mismatch means the
split is not the one configured (a bug in assignment, exposure logging or filtering),
which makes every result above suspect; ``mismatch`` flags p < ``SRM_THRESHOLD`` =
0.001, the customary threshold for this check (Fabijan et al. 2019, "Diagnosing sample
ratio mismatch in online controlled experiments", KDD): strict, because the check runs
on every look at the results. No test (p None, no flag) while an expected count is below
5, where the chi-square approximation is poor.

Non-finite numbers never appear in the results: what is undefined is None.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast, get_args

import polars as pl
from scipy import stats

from domain.assistant.prompts import (
    FieldError,
    ModelSettings,
    canonical_overrides,
    invalid_fields,
    merge,
    validate_settings,
)
from domain.errors import InvalidFieldsError

Unit = Literal["user", "session", "agent"]
Metric = Literal["rate", "score"]
Status = Literal["insufficient_data", "ready"]
UNITS: tuple[str, ...] = get_args(Unit)
METRICS: tuple[str, ...] = get_args(Metric)

MIN_VARIANTS = 2
MAX_VARIANTS = 10
MIN_SAMPLE_BOUNDS = (1, 1_000_000)
MAX_WEIGHT = 1e6
MAX_NAME_LENGTH = 200  # role and prompt ids
MAX_SALT_LENGTH = 128
SEPARATOR = ":"
DEFAULT_CONFIDENCE = 0.95
SRM_THRESHOLD = 0.001
SRM_MIN_EXPECTED = 5.0

RECORDS_SCHEMA: dict[str, pl.DataType] = {"variant": pl.Int64(), "outcome": pl.Float64()}


# -- definitions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    prompt_id: str
    prompt_version: int
    weight: float = 1.0
    settings: Mapping[str, Any] = field(default_factory=dict)  # model-setting overrides


@dataclass(frozen=True)
class ExperimentDefinition:
    role: str
    variants: tuple[Variant, ...]
    unit: Unit
    metric: Metric
    min_sample: int
    salt: str

    @property
    def control(self) -> Variant:
        return self.variants[0]

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(variant.weight for variant in self.variants)

    def assign(self, unit_id: str) -> int:
        """The index of the variant ``unit_id`` sees, for good (see the module docstring)."""
        return assign(self.salt, unit_id, self.weights)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for an event's payload); ``from_dict`` reads it back."""
        return {
            "role": self.role,
            "variants": [
                {
                    "prompt_id": v.prompt_id,
                    "prompt_version": v.prompt_version,
                    "weight": v.weight,
                    "settings": canonical_overrides(v.settings),
                }
                for v in self.variants
            ],
            "unit": self.unit,
            "metric": self.metric,
            "min_sample": self.min_sample,
            "salt": self.salt,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentDefinition:
        variants = tuple(
            Variant(v["prompt_id"], v["prompt_version"], v["weight"], dict(v["settings"]))
            for v in data["variants"]
        )
        return cls(
            role=data["role"],
            variants=variants,
            unit=data["unit"],
            metric=data["metric"],
            min_sample=data["min_sample"],
            salt=data["salt"],
        )

    def analyse(
        self,
        records: pl.DataFrame,
        confidence: float = DEFAULT_CONFIDENCE,
        srm_threshold: float = SRM_THRESHOLD,
    ) -> ExperimentResults:
        return analyse(
            records,
            metric=self.metric,
            weights=self.weights,
            min_sample=self.min_sample,
            confidence=confidence,
            srm_threshold=srm_threshold,
        )


def new_salt() -> str:
    """A fresh random salt (128 bits, hex): draw it once, when the experiment is created."""
    return secrets.token_hex(16)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_name(name: str, value: object, errors: list[FieldError]) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        message = f"must be a non-blank string of at most {MAX_NAME_LENGTH} characters"
        errors.append(FieldError(name, message))


def _check_settings(
    prefix: str, settings: object, max_tokens_limit: int | None, errors: list[FieldError]
) -> None:
    if not isinstance(settings, Mapping):
        errors.append(FieldError(prefix, "must be a mapping of model settings"))
        return
    if not all(isinstance(name, str) for name in settings):
        errors.append(FieldError(prefix, "must name each setting with a string"))
        return
    if max_tokens_limit is not None:
        errors.extend(validate_settings(settings, max_tokens_limit, prefix + "."))
        return
    try:  # the prompts' rules without a context length: what ``merge`` checks
        merge(ModelSettings(), settings)
    except InvalidFieldsError as refused:
        errors.extend(FieldError(f"{prefix}.{e['field']}", e["message"]) for e in refused.errors)


def _check_variant(
    i: int, variant: object, max_tokens_limit: int | None, errors: list[FieldError]
) -> bool:
    """Append the variant's bad fields; whether it is valid."""
    prefix = f"variants[{i}]"
    if not isinstance(variant, Variant):
        errors.append(FieldError(prefix, "must be a variant"))
        return False
    before = len(errors)
    _check_name(f"{prefix}.prompt_id", variant.prompt_id, errors)
    version = variant.prompt_version
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        errors.append(FieldError(f"{prefix}.prompt_version", "must be an integer >= 1"))
    weight = variant.weight
    if not _is_number(weight) or not 0 < weight <= MAX_WEIGHT:  # NaN fails the comparison
        message = f"must be a number greater than 0 and at most {MAX_WEIGHT:g}"
        errors.append(FieldError(f"{prefix}.weight", message))
    _check_settings(f"{prefix}.settings", variant.settings, max_tokens_limit, errors)
    return len(errors) == before


def _variant_key(variant: Variant) -> tuple[str, int, str]:
    settings = json.dumps(canonical_overrides(variant.settings), sort_keys=True)
    return (variant.prompt_id, variant.prompt_version, settings)


def _check_variants(
    variants: object, max_tokens_limit: int | None, errors: list[FieldError]
) -> None:
    if not isinstance(variants, Sequence) or isinstance(variants, str):
        errors.append(FieldError("variants", "must be a list of variants"))
        return
    if not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        errors.append(
            FieldError("variants", f"must hold {MIN_VARIANTS} to {MAX_VARIANTS} variants")
        )
    seen: dict[tuple[str, int, str], int] = {}
    for i, variant in enumerate(variants):
        if not _check_variant(i, variant, max_tokens_limit, errors):
            continue
        key = _variant_key(variant)
        if key in seen:
            errors.append(FieldError(f"variants[{i}]", f"repeats variants[{seen[key]}]"))
        else:
            seen[key] = i


def validate_definition(  # noqa: PLR0913
    *,
    role: str,
    variants: Sequence[Variant],
    unit: str,
    metric: str,
    min_sample: int,
    salt: str | None = None,
    max_tokens_limit: int | None = None,
) -> list[FieldError]:
    """Every offending field of an experiment definition (empty when it is valid).

    ``max_tokens_limit``: the context length of the role's model, when known, for the
    variants' ``max_tokens``.
    """
    errors: list[FieldError] = []
    _check_name("role", role, errors)
    _check_variants(variants, max_tokens_limit, errors)
    for name, value, choices in (("unit", unit, UNITS), ("metric", metric, METRICS)):
        if value not in choices:
            errors.append(FieldError(name, f"must be one of {', '.join(choices)}"))
    low, high = MIN_SAMPLE_BOUNDS
    if not isinstance(min_sample, int) or isinstance(min_sample, bool):
        errors.append(FieldError("min_sample", "must be an integer"))
    elif not low <= min_sample <= high:
        errors.append(FieldError("min_sample", f"must be between {low} and {high:,}"))
    if salt is not None and (not isinstance(salt, str) or not 0 < len(salt) <= MAX_SALT_LENGTH):
        message = f"must be a non-empty string of at most {MAX_SALT_LENGTH} characters"
        errors.append(FieldError("salt", message))
    return errors


def define_experiment(  # noqa: PLR0913
    *,
    role: str,
    variants: Sequence[Variant],
    unit: str,
    metric: str,
    min_sample: int,
    salt: str | None = None,
    max_tokens_limit: int | None = None,
) -> ExperimentDefinition:
    """A valid definition, with a new salt unless one is given; else ``InvalidFieldsError``."""
    errors = validate_definition(
        role=role,
        variants=variants,
        unit=unit,
        metric=metric,
        min_sample=min_sample,
        salt=salt,
        max_tokens_limit=max_tokens_limit,
    )
    if errors:
        raise invalid_fields(errors)
    return ExperimentDefinition(
        role=role,
        variants=tuple(replace(v, settings=canonical_overrides(v.settings)) for v in variants),
        unit=cast(Unit, unit),
        metric=cast(Metric, metric),
        min_sample=min_sample,
        salt=new_salt() if salt is None else salt,
    )


# -- assignment -------------------------------------------------------------------------


def unit_point(salt: str, unit_id: str) -> float:
    """The unit's point u in [0, 1): steps 1 and 2 of the module docstring."""
    digest = hashlib.sha256(f"{salt}{SEPARATOR}{unit_id}".encode()).digest()
    return math.ldexp(int.from_bytes(digest[:8], "big") >> 11, -53)


def _running_sums(weights: Sequence[float]) -> list[float]:
    """c_0 .. c_{k-1}, added left to right; ``ValueError`` unless the weights are finite,
    non-negative and have a positive, finite sum."""
    if not weights:
        raise ValueError("there must be at least one weight")
    running: list[float] = []
    total = 0.0
    for weight in weights:
        value = float(weight)
        if not math.isfinite(value) or value < 0:
            raise ValueError("weights must be finite and non-negative")
        total += value
        running.append(total)
    if not 0 < total < math.inf:
        raise ValueError("the weights must have a positive, finite sum")
    return running


def thresholds(weights: Sequence[float]) -> tuple[float, ...]:
    """t_i = c_i / W (step 3 of the module docstring); the last is 1.0."""
    running = _running_sums(weights)
    return tuple(c / running[-1] for c in running)


def shares(weights: Sequence[float]) -> tuple[float, ...]:
    """Each variant's share of traffic, w_i / W."""
    total = _running_sums(weights)[-1]
    return tuple(float(weight) / total for weight in weights)


def assign(salt: str, unit_id: str, weights: Sequence[float]) -> int:
    """The variant index of ``unit_id``: the smallest i with u < t_i (step 4).

    Deterministic in every process and Python version; ``ValueError`` for an empty unit id
    or unusable weights.
    """
    if not unit_id:
        raise ValueError("the unit id must not be empty")
    return bisect.bisect_right(thresholds(weights), unit_point(salt, unit_id))


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    lower: float
    upper: float


@dataclass(frozen=True)
class VariantSummary:
    """The sufficient statistics of one variant's records."""

    n: int  # exposed units
    n_outcomes: int  # units that reported an outcome
    total: float  # sum of the reported outcomes (successes, for a rate)
    mean: float | None  # of the reported outcomes
    std_dev: float | None  # of the reported outcomes (n - 1); None below two


@dataclass(frozen=True)
class VersusControl:
    difference: float | None
    difference_ci: Interval | None
    lift: float | None
    lift_ci: Interval | None
    p_value: float | None
    adjusted_p_value: float | None  # Holm, over the comparisons with the control
    significant: bool | None  # None until the results are ready


@dataclass(frozen=True)
class VariantResult:
    index: int
    share: float  # the configured share of traffic, weight / sum of weights
    n: int
    n_outcomes: int
    successes: int | None  # rate only
    estimate: float | None  # the rate, or the mean score
    ci: Interval | None
    std_dev: float | None  # score only
    enough_data: bool
    versus_control: VersusControl | None  # None for the control


@dataclass(frozen=True)
class SampleRatioCheck:
    statistic: float | None
    p_value: float | None
    mismatch: bool
    threshold: float
    expected: tuple[float, ...]  # the exposures the weights expect


@dataclass(frozen=True)
class ExperimentResults:
    metric: Metric
    confidence: float
    min_sample: int
    status: Status
    units: int  # exposed units in all
    variants: tuple[VariantResult, ...]
    sample_ratio: SampleRatioCheck


def _conform(records: pl.DataFrame) -> pl.DataFrame:
    if records.is_empty() and not set(RECORDS_SCHEMA) <= set(records.columns):
        return pl.DataFrame(schema=RECORDS_SCHEMA)
    missing = sorted(set(RECORDS_SCHEMA) - set(records.columns))
    if missing:
        raise ValueError(f"the records lack {', '.join(missing)}")
    if "unit_id" in records.columns and records["unit_id"].is_duplicated().any():
        raise ValueError("the records must hold one row per unit_id")
    return records.select(pl.col(name).cast(dtype) for name, dtype in RECORDS_SCHEMA.items())


def _check_records(frame: pl.DataFrame, variants: int, metric: str) -> None:
    variant, outcome = frame["variant"], frame["outcome"].drop_nulls()
    if variant.null_count() or (variant < 0).any() or (variant >= variants).any():
        raise ValueError(f"each record's variant must be an index from 0 to {variants - 1}")
    if not outcome.is_finite().all():
        raise ValueError("outcomes must be finite numbers")
    if metric == "rate" and not outcome.is_in([0.0, 1.0]).all():
        raise ValueError("the outcomes of a rate must be 0 or 1")


def summarise(records: pl.DataFrame, variants: int, metric: str) -> tuple[VariantSummary, ...]:
    """Each variant's ``VariantSummary``, in index order, from one row per exposed unit."""
    if metric not in METRICS:
        raise ValueError(f"the metric must be one of {', '.join(METRICS)}")
    frame = _conform(records)
    _check_records(frame, variants, metric)
    outcome = pl.col("outcome")
    rows = {
        row["variant"]: row
        for row in frame.group_by("variant")
        .agg(
            n=pl.len(),
            n_outcomes=outcome.count(),
            total=outcome.sum(),
            mean=outcome.mean(),
            std_dev=outcome.std(ddof=1),
        )
        .to_dicts()
    }
    summaries: list[VariantSummary] = []
    for index in range(variants):
        row = rows.get(index)
        if row is None:
            summaries.append(VariantSummary(0, 0, 0.0, None, None))
            continue
        count = int(row["n_outcomes"])
        summaries.append(
            VariantSummary(
                n=int(row["n"]),
                n_outcomes=count,
                total=float(row["total"] or 0.0),
                mean=float(row["mean"]) if count else None,
                std_dev=float(row["std_dev"]) if count >= 2 else None,
            )
        )
    return tuple(summaries)


def wilson_interval(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Wilson's score interval for a proportion successes / n (n >= 1)."""
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def t_interval(mean: float, std_dev: float, n: int, confidence: float) -> Interval:
    """Student's t interval for a mean of n >= 2 values."""
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std_dev / math.sqrt(n)
    return Interval(mean - half, mean + half)


def holm(p_values: Sequence[float]) -> tuple[float, ...]:
    """Holm's step-down adjusted p-values, in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return tuple(adjusted)


def _two_sided_normal(statistic: float) -> float:
    return float(2 * stats.norm.sf(abs(statistic)))


def _rate_versus(
    control: VariantSummary, other: VariantSummary, confidence: float
) -> VersusControl | None:
    """The comparison's fields but the adjusted ones; None when either variant is empty."""
    n0, n1 = control.n, other.n
    if n0 == 0 or n1 == 0:
        return None
    x0, x1 = round(control.total), round(other.total)
    p0, p1 = x0 / n0, x1 / n1
    difference = p1 - p0
    w0, w1 = wilson_interval(x0, n0, confidence), wilson_interval(x1, n1, confidence)
    difference_ci = Interval(
        difference - math.hypot(p1 - w1.lower, w0.upper - p0),
        difference + math.hypot(w1.upper - p1, p0 - w0.lower),
    )
    lift = lift_ci = None
    if x0 > 0:
        lift = difference / p0
    if x0 > 0 and x1 > 0:
        z = float(stats.norm.ppf(0.5 + confidence / 2))
        spread = z * math.sqrt(1 / x1 - 1 / n1 + 1 / x0 - 1 / n0)
        log_ratio = math.log(p1 / p0)
        lift_ci = Interval(math.exp(log_ratio - spread) - 1, math.exp(log_ratio + spread) - 1)
    pooled = (x0 + x1) / (n0 + n1)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    p_value = _two_sided_normal(difference / se) if se > 0 else None
    return VersusControl(difference, difference_ci, lift, lift_ci, p_value, None, None)


def _score_versus(
    control: VariantSummary, other: VariantSummary, confidence: float
) -> VersusControl | None:
    if control.mean is None or other.mean is None:
        return None
    m0, m1 = control.mean, other.mean
    difference = m1 - m0
    lift = difference / abs(m0) if m0 != 0 else None
    if control.std_dev is None or other.std_dev is None:
        return VersusControl(difference, None, lift, None, None, None, None)
    v0 = control.std_dev**2 / control.n_outcomes
    v1 = other.std_dev**2 / other.n_outcomes
    se = math.sqrt(v0 + v1)
    if se == 0:
        return VersusControl(difference, None, lift, None, None, None, None)
    df = (v0 + v1) ** 2 / (v0**2 / (control.n_outcomes - 1) + v1**2 / (other.n_outcomes - 1))
    t = difference / se
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    lift_ci = None
    if lift is not None:
        ratio = m1 / m0
        z = float(stats.norm.ppf(0.5 + confidence / 2))
        lift_half = z * math.sqrt(v1 + ratio**2 * v0) / abs(m0)
        lift_ci = Interval(lift - lift_half, lift + lift_half)
    return VersusControl(
        difference=difference,
        difference_ci=Interval(difference - half, difference + half),
        lift=lift,
        lift_ci=lift_ci,
        p_value=float(2 * stats.t.sf(abs(t), df)),
        adjusted_p_value=None,
        significant=None,
    )


def sample_ratio_check(
    counts: Sequence[int], weights: Sequence[float], threshold: float = SRM_THRESHOLD
) -> SampleRatioCheck:
    """Pearson's chi-square test of the exposure counts against the weights' split."""
    split = shares(weights)
    if len(counts) != len(split):
        raise ValueError("there must be one count per weight")
    total = sum(counts)
    expected = tuple(total * share for share in split)
    if total == 0 or min(expected) < SRM_MIN_EXPECTED:
        return SampleRatioCheck(None, None, False, threshold, expected)
    statistic = math.fsum((n - e) ** 2 / e for n, e in zip(counts, expected, strict=True))
    p_value = float(stats.chi2.sf(statistic, len(counts) - 1))
    return SampleRatioCheck(statistic, p_value, p_value < threshold, threshold, expected)


def _check_parameters(
    weights: Sequence[float], variants: int, min_sample: int, confidence: float, threshold: float
) -> None:
    if len(weights) != variants or variants < MIN_VARIANTS:
        raise ValueError(f"there must be one weight per variant and at least {MIN_VARIANTS}")
    if any(not float(w) > 0 for w in weights):
        raise ValueError("weights must be positive")
    if isinstance(min_sample, bool) or not isinstance(min_sample, int) or min_sample < 1:
        raise ValueError("min_sample must be a positive integer")
    if not 0 < confidence < 1:
        message = "must lie strictly between 0 and 1"
        raise InvalidFieldsError([{"field": "confidence", "message": message}])
    if not 0 < threshold < 1:
        raise ValueError("the sample ratio threshold must lie strictly between 0 and 1")


def _adjusted(
    comparisons: list[VersusControl | None], alpha: float, ready: bool
) -> list[VersusControl | None]:
    raw = [c.p_value if c is not None else None for c in comparisons]
    adjusted = holm([1.0 if p is None else p for p in raw])
    result: list[VersusControl | None] = []
    for comparison, p, q in zip(comparisons, raw, adjusted, strict=True):
        if comparison is None:
            result.append(None)
            continue
        corrected = q if p is not None else None
        significant = (corrected < alpha) if ready and corrected is not None else None
        result.append(
            VersusControl(
                comparison.difference,
                comparison.difference_ci,
                comparison.lift,
                comparison.lift_ci,
                comparison.p_value,
                corrected,
                significant,
            )
        )
    return result


def _empty_versus() -> VersusControl:
    return VersusControl(None, None, None, None, None, None, None)


def analyse_summaries(  # noqa: PLR0913
    summaries: Sequence[VariantSummary],
    *,
    metric: str,
    weights: Sequence[float],
    min_sample: int,
    confidence: float = DEFAULT_CONFIDENCE,
    srm_threshold: float = SRM_THRESHOLD,
) -> ExperimentResults:
    """The results (see the module docstring) from each variant's summary, control first."""
    if metric not in METRICS:
        raise ValueError(f"the metric must be one of {', '.join(METRICS)}")
    _check_parameters(weights, len(summaries), min_sample, confidence, srm_threshold)
    rate = metric == "rate"
    samples = [s.n if rate else s.n_outcomes for s in summaries]
    ready = all(sample >= min_sample for sample in samples)
    versus = _rate_versus if rate else _score_versus
    control = summaries[0]
    comparisons = _adjusted(
        [versus(control, other, confidence) for other in summaries[1:]], 1 - confidence, ready
    )
    srm = sample_ratio_check([s.n for s in summaries], weights, srm_threshold)
    split = shares(weights)
    variants: list[VariantResult] = []
    for index, summary in enumerate(summaries):
        if rate:
            successes: int | None = round(summary.total)
            estimate = ci = None
            if summary.n:
                estimate = round(summary.total) / summary.n
                ci = wilson_interval(round(summary.total), summary.n, confidence)
        else:
            successes = None
            estimate = summary.mean
            ci = None
            if summary.mean is not None and summary.std_dev is not None:
                ci = t_interval(summary.mean, summary.std_dev, summary.n_outcomes, confidence)
        comparison = None if index == 0 else comparisons[index - 1] or _empty_versus()
        variants.append(
            VariantResult(
                index=index,
                share=split[index],
                n=summary.n,
                n_outcomes=summary.n_outcomes,
                successes=successes,
                estimate=estimate,
                ci=ci,
                std_dev=None if rate else summary.std_dev,
                enough_data=samples[index] >= min_sample,
                versus_control=comparison,
            )
        )
    return ExperimentResults(
        metric=cast(Metric, metric),
        confidence=confidence,
        min_sample=min_sample,
        status="ready" if ready else "insufficient_data",
        units=sum(s.n for s in summaries),
        variants=tuple(variants),
        sample_ratio=srm,
    )


def analyse(  # noqa: PLR0913
    records: pl.DataFrame,
    *,
    metric: str,
    weights: Sequence[float],
    min_sample: int,
    confidence: float = DEFAULT_CONFIDENCE,
    srm_threshold: float = SRM_THRESHOLD,
) -> ExperimentResults:
    """The results from one row per exposed unit (``variant``, ``outcome``)."""
    if len(weights) < MIN_VARIANTS:
        raise ValueError(f"there must be one weight per variant and at least {MIN_VARIANTS}")
    return analyse_summaries(
        summarise(records, len(weights), metric),
        metric=metric,
        weights=weights,
        min_sample=min_sample,
        confidence=confidence,
        srm_threshold=srm_threshold,
    )
