"""Baselines: EWMA is the RiskMetrics recursion, the random walk's bands are the normal's."""

from __future__ import annotations

import math
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from infrastructure.forecasting.baselines import ewma, ewma_variance, random_walk
from infrastructure.forecasting.distributions import price_quantiles, quantiles

KNOWN = [1.0, -2.0, 3.0, 0.5]


def test_ewma_equals_the_riskmetrics_recursion_on_known_data() -> None:
    result = ewma_variance(jnp.asarray(KNOWN))
    # by hand: s2_1 = r_1^2 = 1, s2_2 = .94 * 1 + .06 * 1 = 1, s2_3 = .94 + .06 * 4 = 1.18,
    # s2_4 = .94 * 1.18 + .06 * 9 = 1.6492, s2_5 = .94 * 1.6492 + .06 * .25 = 1.565248
    np.testing.assert_allclose(np.asarray(result.variances), [1.0, 1.0, 1.18, 1.6492], rtol=1e-6)
    assert float(result.next_variance) == pytest.approx(1.565248, rel=1e-6)


def test_ewma_matches_a_loop_on_longer_data_and_its_lambda() -> None:
    rng = np.random.default_rng(3)
    r = rng.normal(0.0, 1.3, 300)
    for lam in (0.94, 0.97):
        s2 = [r[0] ** 2]
        for x in r:
            s2.append(lam * s2[-1] + (1 - lam) * x**2)
        with jax.enable_x64(True):
            result = ewma_variance(jnp.asarray(r), lam)
            np.testing.assert_allclose(np.asarray(result.variances), s2[:-1], rtol=1e-12)
            assert float(result.next_variance) == pytest.approx(s2[-1], rel=1e-12)


def test_ewma_forecast_is_square_root_of_time() -> None:
    dist = ewma(jnp.asarray(KNOWN), 3)
    np.testing.assert_allclose(
        np.asarray(dist.scale), [math.sqrt(1.565248 * k) for k in (1, 2, 3)], rtol=1e-6
    )
    np.testing.assert_array_equal(np.asarray(dist.loc), 0.0)
    assert np.all(np.isinf(np.asarray(dist.df)))


@pytest.mark.parametrize("drift", [True, False])
def test_random_walk_quantiles_equal_the_normals(drift: bool) -> None:
    rng = np.random.default_rng(5)
    r = rng.normal(0.0004, 0.011, 750)
    mean, std = float(np.mean(r)), float(np.std(r, ddof=1))
    probs = [0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975]
    with jax.enable_x64(True):
        dist = random_walk(jnp.asarray(r), 10, drift=drift)
    q = np.asarray(quantiles(dist, np.asarray(probs)))
    assert q.shape == (10, len(probs))
    for k in range(1, 11):
        normal = NormalDist(mu=k * mean if drift else 0.0, sigma=math.sqrt(k) * std)
        np.testing.assert_allclose(q[k - 1], [normal.inv_cdf(p) for p in probs], rtol=1e-9)
    prices = np.asarray(price_quantiles(jnp.asarray(100.0), dist, np.asarray(probs), percent=False))
    np.testing.assert_allclose(prices, 100.0 * np.exp(q), rtol=1e-12)


def test_baselines_vmap_over_windows() -> None:
    rng = np.random.default_rng(8)
    windows = jnp.asarray(rng.normal(0.0, 1.0, (6, 200)))
    batched = jax.vmap(lambda w: random_walk(w, 5, drift=True))(windows)
    vol = jax.vmap(ewma_variance)(windows)
    for i in range(6):
        single = random_walk(windows[i], 5, drift=True)
        np.testing.assert_allclose(np.asarray(batched.loc[i]), np.asarray(single.loc), rtol=1e-6)
        np.testing.assert_allclose(
            np.asarray(batched.scale[i]), np.asarray(single.scale), rtol=1e-6
        )
        one = ewma_variance(windows[i])
        np.testing.assert_allclose(
            np.asarray(vol.variances[i]), np.asarray(one.variances), rtol=1e-6
        )
    # leading axes batch without vmap too
    assert random_walk(windows, 5, drift=False).scale.shape == (6, 5)
    assert ewma_variance(windows).variances.shape == (6, 200)


def test_a_horizon_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="horizon"):
        random_walk(jnp.asarray(KNOWN), 0, drift=True)
