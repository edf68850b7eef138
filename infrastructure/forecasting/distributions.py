"""Predictive distributions of log returns and their quantiles, in JAX.

A :class:`ReturnDistribution` is a location-scale Student-t: ``loc + scale * T`` with
``T`` a standard t of ``df`` degrees of freedom, so its variance is
``scale**2 * df / (df - 2)``. ``df = inf`` is the normal (``scale`` is then the
standard deviation). Every forecaster in this package yields one per horizon step, in
the units of the returns it was given (``garch`` works in percent log returns, see its
docstring); :func:`price_quantiles` turns one into price quantiles.

JAX has no Student-t quantile function, so :func:`quantiles` inverts the t CDF
(``jax.scipy.special.betainc``) by bisection: a fixed 200 halvings of a bracket that
holds every quantile of the requested levels, far past float64's resolution, jittable
and vmappable.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import betainc, ndtri
from jax.typing import ArrayLike

_BISECTIONS = 200


class ReturnDistribution(NamedTuple):
    """``loc + scale * T(df)``; arrays broadcast together (``df = inf``: normal)."""

    loc: jax.Array
    scale: jax.Array
    df: jax.Array


def _t_cdf(x: jax.Array, df: jax.Array) -> jax.Array:
    # both forms of the regularised incomplete beta, each where its argument keeps precision
    x2 = x * x
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + x2))
    centre = 0.5 * betainc(0.5, df / 2.0, x2 / (df + x2))
    far = jnp.where(x > 0, 1.0 - tail, tail)
    near = 0.5 + jnp.sign(x) * centre
    return jnp.where(x2 < df, near, far)


def standard_quantile(p: jax.Array, df: jax.Array) -> jax.Array:
    """The ``p`` quantile of a standard t of ``df`` degrees of freedom (inf: normal)."""
    p = jnp.asarray(p)
    if not jnp.issubdtype(p.dtype, jnp.floating):
        p = p.astype(float)
    df = jnp.asarray(df, dtype=p.dtype)
    p, df = jnp.broadcast_arrays(p, df)
    z = ndtri(p)
    finite = jnp.isfinite(df)
    safe_df = jnp.where(finite, df, 1e6)
    # |t_p| <= |z_p| * (1 + ...) grows as df falls; a wide bracket, halved to the bit
    bound = jnp.maximum(jnp.abs(z), 1.0) * (1.0 + 1e3 / safe_df) * 50.0

    def halve(_: int, bracket: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        low, high = bracket
        mid = 0.5 * (low + high)
        below = _t_cdf(mid, safe_df) < p
        return jnp.where(below, mid, low), jnp.where(below, high, mid)

    low, high = jax.lax.fori_loop(0, _BISECTIONS, halve, (-bound, bound))
    return jnp.where(finite, 0.5 * (low + high), z)


def quantiles(dist: ReturnDistribution, probs: ArrayLike) -> jax.Array:
    """Quantiles at ``probs`` (last axis) of each distribution: shape ``(*dist, len(probs))``.

    In the distribution's precision (float64 ones, as ``garch`` returns, stay float64).
    """
    with jax.enable_x64(True):
        scale = jnp.asarray(dist.scale)
        if not jnp.issubdtype(scale.dtype, jnp.floating):
            scale = scale.astype(float)
        probs = jnp.asarray(probs, dtype=scale.dtype)
        df = jnp.asarray(dist.df, dtype=scale.dtype)[..., None]
        loc = jnp.asarray(dist.loc, dtype=scale.dtype)[..., None]
        return loc + scale[..., None] * standard_quantile(probs, df)


def price_quantiles(
    last_close: ArrayLike, dist: ReturnDistribution, probs: ArrayLike, *, percent: bool
) -> jax.Array:
    """Price quantiles ``last_close * exp(q)`` of cumulative log returns ``dist``.

    ``percent``: the distribution is of percent log returns (``100 * log``), as ``garch``'s.
    """
    q = quantiles(dist, probs)
    with jax.enable_x64(True):
        if percent:
            q = q / 100.0
        return jnp.asarray(last_close, dtype=q.dtype)[..., None, None] * jnp.exp(q)
