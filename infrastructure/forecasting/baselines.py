"""Baseline forecasters in JAX: the random walk and RiskMetrics EWMA volatility.

Both work on log returns in whatever units they are given (plain or percent; their
outputs are in the same units) and are pure ``jnp`` functions of their arrays, so
``jax.vmap`` and ``jax.jit`` apply (rolling origins, tickers); leading axes batch too.
The caller passes the returns up to the data cutoff and nothing after it.

- :func:`random_walk`: log prices follow a random walk, the ``k``-step log return
  ``r_{T+1} + ... + r_{T+k}`` is normal with mean ``k m`` (``drift=True``, ``m`` the
  sample mean of the returns) or ``0`` (no drift), and standard deviation ``sqrt(k) s``,
  ``s`` the sample standard deviation (``ddof=1``) in both cases.
- :func:`ewma_variance`: RiskMetrics (J.P. Morgan, 1996) with ``lambda = 0.94``, zero
  mean: ``s2_{t+1} = lambda s2_t + (1 - lambda) r_t^2``, started at ``s2_1 = r_1^2``
  (so ``s2_2 = r_1^2`` too). ``variances[t]`` uses returns before ``t`` only;
  ``next_variance`` is ``s2_{n+1}``, the forecast for every future day. :func:`ewma`
  gives the ``k``-step predictive distribution: normal, mean 0, variance ``k s2_{n+1}``
  (the RiskMetrics square-root-of-time rule).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from infrastructure.forecasting.distributions import ReturnDistribution

RISKMETRICS_LAMBDA = 0.94


def _steps(horizon: int, dtype: jnp.dtype) -> jax.Array:
    if horizon < 1:
        raise ValueError("horizon must be at least 1")
    return jnp.arange(1, horizon + 1, dtype=dtype)


def random_walk(returns: jax.Array, horizon: int, *, drift: bool) -> ReturnDistribution:
    """Distribution of the 1..``horizon``-step cumulative log return: ``(..., horizon)``."""
    r = jnp.asarray(returns)
    if not jnp.issubdtype(r.dtype, jnp.floating):
        r = r.astype(float)
    k = _steps(horizon, r.dtype)
    mean = jnp.mean(r, axis=-1, keepdims=True)
    std = jnp.std(r, axis=-1, ddof=1, keepdims=True)
    loc = mean * k if drift else jnp.zeros_like(mean) * k
    return ReturnDistribution(loc=loc, scale=std * jnp.sqrt(k), df=jnp.full_like(loc, jnp.inf))


class EwmaVariance(NamedTuple):
    variances: jax.Array  # s2_1 .. s2_n, each from the returns before it
    next_variance: jax.Array  # s2_{n+1}


def ewma_variance(returns: jax.Array, lam: float = RISKMETRICS_LAMBDA) -> EwmaVariance:
    """RiskMetrics variances along the last axis."""
    r = jnp.asarray(returns)
    if not jnp.issubdtype(r.dtype, jnp.floating):
        r = r.astype(float)
    squares = jnp.moveaxis(r, -1, 0) ** 2

    def step(s2: jax.Array, r2: jax.Array) -> tuple[jax.Array, jax.Array]:
        return lam * s2 + (1.0 - lam) * r2, s2

    last, variances = jax.lax.scan(step, squares[0], squares)
    return EwmaVariance(variances=jnp.moveaxis(variances, 0, -1), next_variance=last)


def ewma(returns: jax.Array, horizon: int, lam: float = RISKMETRICS_LAMBDA) -> ReturnDistribution:
    """Distribution of the 1..``horizon``-step cumulative log return under EWMA volatility."""
    nxt = ewma_variance(returns, lam).next_variance[..., None]
    k = _steps(horizon, nxt.dtype)
    scale = jnp.sqrt(nxt * k)
    return ReturnDistribution(
        loc=jnp.zeros_like(scale), scale=scale, df=jnp.full_like(scale, jnp.inf)
    )
