"""GARCH(1,1) with a constant mean, normal or Student-t innovations, fitted by MLE in JAX.

Model, on **percent log returns** ``r_t = 100 * log(close_t / close_{t-1})`` (the scale
``arch`` fits by default; the parameters are in the same units: ``mu`` in percent,
``omega`` in percent squared; :func:`percent_log_returns` builds them)::

    r_t = mu + e_t,  e_t = sqrt(h_t) z_t,  h_t = omega + alpha e_{t-1}^2 + beta h_{t-1}

with ``z_t`` standard normal or a Student-t of ``nu`` degrees of freedom rescaled to unit
variance. The recursion starts as ``arch`` 8 starts it, so log-likelihoods agree: the
backcast ``b = sum_j w_j (r_j - mean(r))^2`` over the first ``min(75, n)`` returns with
weights ``w_j`` proportional to ``0.94**j``, computed once from the sample mean (not from
``mu``) and held fixed during the fit, and ``h_1 = omega + (alpha + beta) b``. Unlike
``arch``, no variance bounds are applied (``arch`` clips ``h_t`` into a loose band around
an EWMA of the data while optimising; at a fitted model the band does not bind).

Fitting: the mean negative log-likelihood is minimised by ``optax.lbfgs`` (its zoom line
search, exact gradients by ``jax.grad``) over unconstrained ``theta``, mapped onto the
stationary region as

    mu = mean(r) + std(r) theta_0              omega = var(r) exp(theta_1)
    alpha + beta = sigmoid(theta_2)            alpha / (alpha + beta) = sigmoid(theta_3)
    nu = 2 + exp(theta_4)                      (Student-t only)

so omega > 0, alpha, beta > 0, alpha + beta < 1 and nu > 2 hold at every step, and the
problem is scale-free (a fit of ``100 r`` is a fit of ``r``, rescaled). It starts from the
best of a small grid (persistence 0.90/0.97/0.99 times ARCH share 0.05/0.10/0.20, nu 8)
and runs inside one ``lax.while_loop`` until the gradient norm (of the mean negative
log-likelihood, in ``theta``) is below ``tol`` or ``max_iter`` steps have run; the
result's ``converged`` says which. Because the whole fit is one traced function of the
returns, :func:`fit_garch` on a ``(..., n)`` array is a single ``jax.vmap`` over the
leading axes (rolling windows of one length, tickers): one compiled call, no Python loop.
Everything runs in float64 (``jax.enable_x64`` around each public call).

Forecasts: ``h_{T+1} = omega + alpha e_T^2 + beta h_T`` and, for ``k >= 2``,
``h_{T+k} = omega + (alpha + beta) h_{T+k-1}`` (``arch``'s analytic forecast).
:func:`predictive` gives, per step ``k``, the distribution of the one-day log return
``r_{T+k}`` (``loc = mu``, variance ``h_{T+k}``, ``df = nu``) and of the cumulative
``r_{T+1} + ... + r_{T+k}`` (``loc = k mu``, variance ``sum h``). The cumulative one is
exact for the normal; for the t it is the t of the same ``nu`` with the exact variance, an
approximation (a sum of t's is not a t) that errs on the heavy side.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import gammaln

from infrastructure.forecasting.distributions import ReturnDistribution

Innovations = Literal["normal", "t"]

_BACKCAST_LENGTH = 75
_BACKCAST_DECAY = 0.94
_START_PERSISTENCE = (0.90, 0.97, 0.99)
_START_ARCH_SHARE = (0.05, 0.10, 0.20)
_START_NU = 8.0


class GarchParams(NamedTuple):
    """Natural parameters (``nu`` is inf for normal innovations)."""

    mu: jax.Array
    omega: jax.Array
    alpha: jax.Array
    beta: jax.Array
    nu: jax.Array


class GarchFit(NamedTuple):
    """A fit; with batched returns every field has the batch's leading axes."""

    params: GarchParams
    loglikelihood: jax.Array
    converged: jax.Array
    iterations: jax.Array
    gradient_norm: jax.Array
    variances: jax.Array  # h_1 .. h_n, the conditional variances of the sample
    next_variance: jax.Array  # h_{n+1}
    last_residual: jax.Array  # e_n


def percent_log_returns(closes: np.typing.ArrayLike) -> np.ndarray:
    """``100 * diff(log(closes))`` along the last axis."""
    return np.asarray(100.0 * np.diff(np.log(np.asarray(closes, dtype=np.float64)), axis=-1))


def backcast(returns: jax.Array) -> jax.Array:
    """``arch``'s starting variance: EWMA(0.94) of the first 75 demeaned squares."""
    resid = returns - jnp.mean(returns)
    tau = min(_BACKCAST_LENGTH, returns.shape[-1])
    w = _BACKCAST_DECAY ** jnp.arange(tau, dtype=returns.dtype)
    return jnp.sum(resid[:tau] ** 2 * w) / jnp.sum(w)


def _variances(params: GarchParams, returns: jax.Array, start: jax.Array) -> jax.Array:
    e2 = (returns - params.mu) ** 2

    def step(
        carry: tuple[jax.Array, jax.Array], e2_t: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        h_prev, e2_prev = carry
        h = params.omega + params.alpha * e2_prev + params.beta * h_prev
        return (h, e2_t), h

    _, h = jax.lax.scan(step, (start, start), e2)
    return h


def _loglikelihood(
    params: GarchParams, returns: jax.Array, start: jax.Array, innovations: Innovations
) -> tuple[jax.Array, jax.Array]:
    h = _variances(params, returns, start)
    e2 = (returns - params.mu) ** 2
    if innovations == "normal":
        terms = -0.5 * (math.log(2.0 * math.pi) + jnp.log(h) + e2 / h)
    else:
        nu = params.nu
        terms = (
            gammaln((nu + 1.0) / 2.0)
            - gammaln(nu / 2.0)
            - 0.5 * jnp.log(jnp.pi * (nu - 2.0))
            - 0.5 * jnp.log(h)
            - (nu + 1.0) / 2.0 * jnp.log1p(e2 / (h * (nu - 2.0)))
        )
    return jnp.sum(terms), h


def _to_params(
    theta: jax.Array, mean: jax.Array, var: jax.Array, innovations: Innovations
) -> GarchParams:
    persistence = jax.nn.sigmoid(theta[2])
    share = jax.nn.sigmoid(theta[3])
    nu = 2.0 + jnp.exp(theta[4]) if innovations == "t" else jnp.asarray(jnp.inf, theta.dtype)
    return GarchParams(
        mu=mean + jnp.sqrt(var) * theta[0],
        omega=var * jnp.exp(theta[1]),
        alpha=persistence * share,
        beta=persistence * (1.0 - share),
        nu=nu,
    )


def _start_grid(innovations: Innovations, dtype: jnp.dtype) -> jax.Array:
    rows = []
    for p in _START_PERSISTENCE:
        for s in _START_ARCH_SHARE:
            row = [0.0, math.log(1.0 - p), math.log(p / (1.0 - p)), math.log(s / (1.0 - s))]
            if innovations == "t":
                row.append(math.log(_START_NU - 2.0))
            rows.append(row)
    return jnp.asarray(rows, dtype=dtype)


def _fit_one(returns: jax.Array, innovations: Innovations, max_iter: int, tol: float) -> GarchFit:
    n = returns.shape[-1]
    mean = jnp.mean(returns)
    var = jnp.var(returns)
    start = backcast(returns)

    def objective(theta: jax.Array) -> jax.Array:
        ll, _ = _loglikelihood(
            _to_params(theta, mean, var, innovations), returns, start, innovations
        )
        return -ll / n

    grid = _start_grid(innovations, returns.dtype)
    values = jax.vmap(objective)(grid)
    theta0 = grid[jnp.argmin(jnp.where(jnp.isfinite(values), values, jnp.inf))]

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def body(
        carry: tuple[jax.Array, optax.OptState, jax.Array],
    ) -> tuple[jax.Array, optax.OptState, jax.Array]:
        theta, state, i = carry
        value, grad = value_and_grad(theta, state=state)
        updates, state = solver.update(
            grad, state, theta, value=value, grad=grad, value_fn=objective
        )
        return optax.apply_updates(theta, updates), state, i + 1

    def keep_going(carry: tuple[jax.Array, optax.OptState, jax.Array]) -> jax.Array:
        _, state, i = carry
        grad_norm = optax.tree.norm(optax.tree.get(state, "grad"))
        return (i == 0) | ((i < max_iter) & (grad_norm >= tol))

    theta, _, iterations = jax.lax.while_loop(
        keep_going, body, (theta0, solver.init(theta0), jnp.asarray(0))
    )
    value, grad = jax.value_and_grad(objective)(theta)
    grad_norm = jnp.linalg.norm(grad)
    params = _to_params(theta, mean, var, innovations)
    ll, h = _loglikelihood(params, returns, start, innovations)
    last_residual = returns[-1] - params.mu
    return GarchFit(
        params=params,
        loglikelihood=ll,
        converged=(grad_norm < tol) & jnp.isfinite(value),
        iterations=iterations,
        gradient_norm=grad_norm,
        variances=h,
        next_variance=params.omega + params.alpha * last_residual**2 + params.beta * h[-1],
        last_residual=last_residual,
    )


@partial(jax.jit, static_argnames=("innovations", "max_iter", "tol"))
def _fit_batch(returns: jax.Array, innovations: Innovations, max_iter: int, tol: float) -> GarchFit:
    return jax.vmap(lambda r: _fit_one(r, innovations, max_iter, tol))(returns)


def fit_garch(
    returns: np.typing.ArrayLike,
    innovations: Innovations = "normal",
    *,
    max_iter: int = 200,
    tol: float = 1e-7,
) -> GarchFit:
    """Fit GARCH(1,1) to percent log returns ``(..., n)``: one vmapped call over ``...``."""
    if innovations not in ("normal", "t"):
        raise ValueError(f"innovations must be 'normal' or 't', not {innovations!r}")
    with jax.enable_x64(True):
        r = jnp.asarray(returns, dtype=jnp.float64)
        if r.ndim < 1 or r.shape[-1] < 2:
            raise ValueError("need at least two returns along the last axis")
        batch = r.shape[:-1]
        fit = _fit_batch(r.reshape((-1, r.shape[-1])), innovations, max_iter, tol)
        return jax.tree.map(lambda x: x.reshape(batch + x.shape[1:]), fit)


def garch_loglikelihood(
    params: GarchParams, returns: np.typing.ArrayLike, innovations: Innovations = "normal"
) -> jax.Array:
    """Log-likelihood of one series at ``params``, the recursion started as ``arch`` does."""
    with jax.enable_x64(True):
        r = jnp.asarray(returns, dtype=jnp.float64)
        p = GarchParams(*(jnp.asarray(x, dtype=jnp.float64) for x in params))
        ll, _ = _loglikelihood(p, r, backcast(r), innovations)
        return ll


def forecast_variance(fit: GarchFit, horizon: int) -> jax.Array:
    """``h_{T+1} .. h_{T+horizon}``: shape ``(..., horizon)``."""
    if horizon < 1:
        raise ValueError("horizon must be at least 1")
    with jax.enable_x64(True):
        p = fit.params
        k = jnp.arange(horizon, dtype=jnp.float64)
        persistence = (p.alpha + p.beta)[..., None]
        long_run = (p.omega / (1.0 - p.alpha - p.beta))[..., None]
        # the recursion in closed form: h_{T+k} - h_bar = (alpha + beta)^(k-1) (h_{T+1} - h_bar)
        return long_run + persistence**k * (fit.next_variance[..., None] - long_run)


class GarchPredictive(NamedTuple):
    step: ReturnDistribution  # of r_{T+k}
    cumulative: ReturnDistribution  # of r_{T+1} + ... + r_{T+k}


def _t_scale(variance: jax.Array, nu: jax.Array) -> jax.Array:
    factor = jnp.where(jnp.isfinite(nu), (nu - 2.0) / jnp.where(jnp.isfinite(nu), nu, 1.0), 1.0)
    return jnp.sqrt(variance * factor)


def predictive(fit: GarchFit, horizon: int) -> GarchPredictive:
    """Per-step and cumulative predictive distributions of percent log returns."""
    h = forecast_variance(fit, horizon)
    with jax.enable_x64(True):
        p = fit.params
        mu = jnp.broadcast_to(p.mu[..., None], h.shape)
        nu = jnp.broadcast_to(p.nu[..., None], h.shape)
        k = jnp.arange(1, horizon + 1, dtype=jnp.float64)
        return GarchPredictive(
            step=ReturnDistribution(mu, _t_scale(h, nu), nu),
            cumulative=ReturnDistribution(mu * k, _t_scale(jnp.cumsum(h, axis=-1), nu), nu),
        )
