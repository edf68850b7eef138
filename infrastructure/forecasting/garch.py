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

Fitting maximises the log-likelihood over unconstrained ``theta``, mapped onto the
stationary region as

    mu = mean(r) + std(r) theta_0              omega = var(r) exp(theta_1)
    alpha + beta = sigmoid(theta_2)            alpha / (alpha + beta) = sigmoid(theta_3)
    nu = 2 + (10,000 - 2) sigmoid(theta_4)     (Student-t only)

so omega > 0, alpha, beta > 0, alpha + beta < 1 and 2 < nu < 10,000 hold at every step,
and the problem is scale-free (a fit of ``100 r`` is a fit of ``r``, rescaled). For the
usual nu the last map is the exponential one, ``nu - 2 = 9,998 exp(theta_4)``, to within a
factor ``1 - (nu - 2) / 9,998``. The cap is there because near-normal returns have their
likelihood's supremum at nu = infinity, where an unbounded nu ran off to 1e16 (the optax
fit this one replaces, some windows not converging) or 1e127 (this fit, on windows of
250), far past where the t quantiles of ``distributions`` stay accurate (at nu = 1e12 they
are off by up to 0.4%). At nu = 10,000
every t quantile from 0.1% to 99.9% is the normal's to within 0.03%, and on the
sample's most normal windows of 1,000 the log-likelihood is within 2e-4 of its supremum
(``arch`` bounds nu to 500).

:func:`fit_garch` on a ``(..., n)`` array fits all the series of ``...`` (rolling windows
of one length, tickers) together, in one jitted call with no Python loop over them; each
step below is one vector operation across the windows:

- **Value and exact gradient in one forward pass.** The returns are laid out time-major,
  ``(n, windows)``, and a single ``lax.scan`` carries, besides ``h_t``, its derivatives
  in ``(mu, omega, alpha, beta)``, themselves GARCH-like recursions (``dh_t/dbeta =
  h_{t-1} + beta dh_{t-1}/dbeta``, ``dh_t/dmu = -2 alpha e_{t-1} + beta dh_{t-1}/dmu``,
  ...), and sums the log-likelihood and its analytic gradient as it goes: there is no
  reverse-mode tape over the ``n`` steps. The chain rule to ``theta`` is ``jax.jacfwd``
  of the map above. The unit tests hold this gradient to ``jax.grad`` of the plain
  recursion (:func:`garch_loglikelihood`'s) and to central differences. Over 1,000 x
  1,000 one pass costs about 30 ms here, a vmapped ``jax.value_and_grad`` about 150 ms.
- **BFGS, written here, batched.** Each window keeps its own dense inverse-Hessian
  approximation (4 or 5 parameters), started from the inverse of the BHHH matrix (the
  sum of the per-observation scores' outer products, accumulated by the same kind of
  pass at the starting point) rather than from the identity (normal: 8.6 steps on average
  instead of 22.5); then the standard BFGS update (skipped unless ``s'y > 0``), steps at
  most ``_MAX_STEP`` long, and an Armijo backtracking line search with safeguarded
  quadratic interpolation. Each pass of the loop is exactly one batched value and
  gradient: every window either accepts its trial point (and sets up its next step) or
  shortens its step, independently of the others, so the loop runs as many passes as the
  slowest window needs evaluations (on the sample S&P 500 windows of 1,000: normal, 12
  against a mean of 8.6; t, 35 against 10.5, the slow ones taking ``alpha + beta``
  towards 1), where the vmapped optax L-BFGS it replaces ran the slowest window's iterations
  (25 and 56), each with a zoom line search. A coordinate of ``theta`` beyond 30 in size
  (``alpha`` = 0 to 13 digits, say) is held where it is: its vanishing curvature would
  otherwise take over the capped steps of the others (on simulated returns without GARCH
  effects, 7 normal fits of 200 ran out of steps before this, 1 after). A window stops
  when its gradient norm (of the mean negative log-likelihood, in ``theta``) is below
  ``tol``, after ``max_iter`` accepted steps, or when its line search can go no further;
  the result's ``converged`` says which. (Gathering the last running windows into a smaller batch
  saved little and more than doubled the compilation time: not done.)
- **Start.** The best, by one value-only pass over all of them at once, of persistence
  0.90, 0.97 and 0.99 times ARCH share 0.05, 0.10 and 0.20, omega set so that the
  model's variance is the sample's, nu 8 (the grid of the optax fit). On the sample S&P
  500 windows the persistence alone would do as well and save a tenth of the time; on
  simulated returns without GARCH effects, whose likelihood has several maxima, the full
  grid ends below ``arch``'s maximum (by more than 0.01) in 16 windows of 200 where the
  persistence alone does in 19 (normal; t: 7 and 10).
- **Batches of a multiple of 32.** XLA's CPU loops treat a batch's last, partial group of
  vector lanes differently in the last bits, and a flat likelihood can carry those bits
  into the fit; so the windows are padded (copies of the last one) to a multiple of 32,
  and a window's fit is then the same, bit for bit, whatever other windows come with it.

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
from jax.scipy.special import gammaln

from infrastructure.forecasting.distributions import ReturnDistribution

Innovations = Literal["normal", "t"]

_BACKCAST_LENGTH = 75
_BACKCAST_DECAY = 0.94
_START_PERSISTENCE = (0.90, 0.97, 0.99)
_START_ARCH_SHARE = (0.05, 0.10, 0.20)
_START_NU = 8.0
_NU_MAX = 1e4  # the t's degrees of freedom stay below this (see the module docstring)
_BATCH_MULTIPLE = 32  # windows are fitted in batches of a multiple of this (see fit_garch)
_STIRLING_FROM = 100.0  # nu from which the t's constant is taken from Stirling's series
_ARMIJO = 1e-4  # sufficient decrease, as a fraction of the step's predicted decrease
_MAX_STEP = 5.0  # longest step in theta; farther is off the model's sensible range
_MIN_STEP = 1e-12  # a line search shorter than this has failed
_FREEZE_AT = 30.0  # |theta_i| past this is at a boundary: held there (see _pass)


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


# --- the likelihood, plainly: for garch_loglikelihood and the fitted variances ----------


def _t_log_constant(nu: jax.Array) -> jax.Array:
    """``log Gamma((nu + 1) / 2) - log Gamma(nu / 2) - log(pi (nu - 2)) / 2``, to the last bit.

    As ``nu`` grows the two log-gammas cancel (near the cap of 1e4 their difference is off
    by about 2e-12, more than the objective falls in a fit's last steps, and a fit of
    near-normal returns goes there); so from ``nu = 100`` on, Stirling's series for the
    difference, which loses nothing:
    ``z log1p(1 / 2z) - 1/2 - log(2 pi) / 2 - log1p(-1 / z) / 2 + S(z + 1/2) - S(z)``
    with ``z = nu / 2`` and ``S(x) = 1/12x - 1/360x^3 + 1/1260x^5 - 1/1680x^7`` (the next
    term is below 1e-18 there). Its derivative, by ``jax.jvp``, is exact to the same degree.
    """
    z = 0.5 * nu
    direct = gammaln(z + 0.5) - gammaln(z) - 0.5 * jnp.log(jnp.pi * (nu - 2.0))
    z = jnp.where(nu < _STIRLING_FROM, 0.5 * _STIRLING_FROM, z)  # the other branch finite

    def tail(x: jax.Array) -> jax.Array:
        inv = 1.0 / x
        inv2 = inv * inv
        return inv * (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 / 1680)))

    series = (
        z * jnp.log1p(0.5 / z)
        - 0.5 * (1.0 + math.log(2.0 * math.pi) + jnp.log1p(-1.0 / z))
        + (tail(z + 0.5) - tail(z))
    )
    return jnp.where(nu < _STIRLING_FROM, direct, series)


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
            _t_log_constant(nu)
            - 0.5 * jnp.log(h)
            - (nu + 1.0) / 2.0 * jnp.log1p(e2 / (h * (nu - 2.0)))
        )
    return jnp.sum(terms), h


# --- the likelihood for fitting: time-major, value and exact gradient in one pass --------


class _Observation(NamedTuple):
    """One observation's log-likelihood and its partial derivatives."""

    value: jax.Array
    d_h: jax.Array  # through h_t
    d_mu: jax.Array  # through e_t = r_t - mu directly (h_t's dependence is in d_h)
    d_nu: jax.Array


class _TConstants(NamedTuple):
    """What the t's log-likelihood needs of ``nu``, worked out once per evaluation."""

    k: jax.Array  # (nu + 1) / 2
    inv_nu2: jax.Array  # 1 / (nu - 2)
    c: jax.Array  # log of the density's normalising constant
    dc: jax.Array  # its derivative in nu


def _constants(p: GarchParams, innovations: Innovations) -> _TConstants | None:
    if innovations == "normal":
        return None
    nu = p.nu
    k = 0.5 * (nu + 1.0)
    c, dc = jax.jvp(_t_log_constant, (nu,), (jnp.ones_like(nu),))
    return _TConstants(k=k, inv_nu2=1.0 / (nu - 2.0), c=c, dc=dc)


def _observation(h: jax.Array, e: jax.Array, t: _TConstants | None) -> _Observation:
    """``l_t`` and its partials; ``t`` is None for normal innovations."""
    inv_h = 1.0 / h
    if t is None:
        q = e * e * inv_h
        value = -0.5 * (math.log(2.0 * math.pi) + jnp.log(h) + q)
        return _Observation(value, 0.5 * inv_h * (q - 1.0), e * inv_h, jnp.zeros_like(q))
    # l_t = c - log(h) / 2 - k log1p(x),  x = e^2 / (h (nu - 2))
    x = e * e * inv_h * t.inv_nu2
    log1p_x = jnp.log1p(x)
    share = x / (1.0 + x)
    return _Observation(
        value=t.c - 0.5 * jnp.log(h) - t.k * log1p_x,
        d_h=(t.k * share - 0.5) * inv_h,
        d_mu=2.0 * t.k * t.inv_nu2 * e * inv_h / (1.0 + x),
        d_nu=t.dc - 0.5 * log1p_x + t.k * t.inv_nu2 * share,
    )


def _observation_scores(
    o: _Observation, dh: tuple[jax.Array, ...], innovations: Innovations
) -> tuple[jax.Array, ...]:
    """d l_t / d(mu, omega, alpha, beta[, nu])."""
    d_mu, d_omega, d_alpha, d_beta = dh
    scores = (o.d_h * d_mu + o.d_mu, o.d_h * d_omega, o.d_h * d_alpha, o.d_h * d_beta)
    return scores + ((o.d_nu,) if innovations == "t" else ())


def _advance(
    h: jax.Array, dh: tuple[jax.Array, ...], e: jax.Array, p: GarchParams
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """``h_{t+1}`` and its derivatives in (mu, omega, alpha, beta) from ``h_t``'s."""
    d_mu, d_omega, d_alpha, d_beta = dh
    e2 = e * e
    return p.omega + p.alpha * e2 + p.beta * h, (
        p.beta * d_mu - 2.0 * p.alpha * e,
        p.beta * d_omega + 1.0,
        p.beta * d_alpha + e2,
        p.beta * d_beta + h,
    )


def _first(p: GarchParams, start: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """``h_1 = omega + (alpha + beta) b`` and its derivatives (``b`` is fixed)."""
    h = p.omega + (p.alpha + p.beta) * start
    zero = jnp.zeros_like(h)
    return h, (zero, zero + 1.0, zero + start, zero + start)


def _value(p: GarchParams, returns: jax.Array, start: jax.Array, inn: Innovations) -> jax.Array:
    """Log-likelihoods of time-major ``returns (n, windows)``; params broadcast."""

    t = _constants(p, inn)

    def step(
        carry: tuple[jax.Array, jax.Array], r: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array], None]:
        h, total = carry
        e = r - p.mu
        e2 = e * e
        return (
            p.omega + p.alpha * e2 + p.beta * h,
            total + _observation(h, e, t).value,
        ), None

    h, _ = _first(p, start)
    (_, total), _ = jax.lax.scan(step, (h, jnp.zeros_like(h)), returns)
    return total


class _Scores(NamedTuple):
    """Sums over a window's observations, in the natural parameters."""

    loglikelihood: jax.Array  # (windows,)
    gradient: jax.Array  # (windows, d): d l / d(mu, omega, alpha, beta[, nu])
    outer: jax.Array | None  # (windows, d, d): sum of s_t s_t', the BHHH matrix


def _scores(
    p: GarchParams,
    returns: jax.Array,
    start: jax.Array,
    inn: Innovations,
    *,
    outer: bool,
) -> _Scores:
    """Log-likelihoods and exact gradients (and, if asked, BHHH matrices), in one pass."""
    d = 5 if inn == "t" else 4
    pairs = [(i, j) for i in range(d) for j in range(i, d)] if outer else []
    t = _constants(p, inn)
    Sums = tuple[jax.Array, ...]
    Carry = tuple[jax.Array, Sums, jax.Array, Sums, Sums]

    def step(carry: Carry, r: jax.Array) -> tuple[Carry, None]:
        h, dh, total, grad, products = carry
        e = r - p.mu
        o = _observation(h, e, t)
        s = _observation_scores(o, dh, inn)
        grad = tuple(g + s_i for g, s_i in zip(grad, s, strict=True))
        products = tuple(m + s[i] * s[j] for m, (i, j) in zip(products, pairs, strict=True))
        h, dh = _advance(h, dh, e, p)
        return (h, dh, total + o.value, grad, products), None

    h, dh = _first(p, start)
    zero = jnp.zeros_like(h)
    init = (h, dh, zero, (zero,) * d, (zero,) * len(pairs))
    (_, _, total, grad, products), _ = jax.lax.scan(step, init, returns)
    if not outer:
        return _Scores(total, jnp.stack(grad, -1), None)
    upper = dict(zip(pairs, products, strict=True))
    rows = [jnp.stack([upper[min(i, j), max(i, j)] for j in range(d)], -1) for i in range(d)]
    return _Scores(total, jnp.stack(grad, -1), jnp.stack(rows, -2))


# --- the transform and the batched BFGS -------------------------------------------------


class _Data(NamedTuple):
    """The windows, batch on the last axis: returns are time-major ``(n, windows)``."""

    returns: jax.Array
    start: jax.Array
    mean: jax.Array
    var: jax.Array


def _to_params(
    theta: jax.Array, mean: jax.Array, var: jax.Array, innovations: Innovations
) -> GarchParams:
    """``theta (..., d)`` to natural parameters of shape ``...``."""
    persistence = jax.nn.sigmoid(theta[..., 2])
    share = jax.nn.sigmoid(theta[..., 3])
    nu = (
        2.0 + (_NU_MAX - 2.0) * jax.nn.sigmoid(theta[..., 4])
        if innovations == "t"
        else jnp.full(persistence.shape, jnp.inf, theta.dtype)
    )
    return GarchParams(
        mu=mean + jnp.sqrt(var) * theta[..., 0],
        omega=var * jnp.exp(theta[..., 1]),
        alpha=persistence * share,
        beta=persistence * (1.0 - share),
        nu=nu,
    )


def _jacobian(theta: jax.Array, data: _Data, innovations: Innovations) -> jax.Array:
    """``d (mu, omega, alpha, beta[, nu]) / d theta`` per window: ``(windows, d, d)``."""

    def free(t: jax.Array, mean: jax.Array, var: jax.Array) -> jax.Array:
        p = _to_params(t, mean, var, innovations)
        return jnp.stack([p.mu, p.omega, p.alpha, p.beta] + ([p.nu] if innovations == "t" else []))

    return jax.vmap(jax.jacfwd(free))(theta, data.mean, data.var)


class _Evaluation(NamedTuple):
    value: jax.Array  # the mean negative log-likelihood, (windows,)
    grad: jax.Array  # its gradient in theta, (windows, d)
    hessian: jax.Array | None  # the BHHH approximation to its Hessian in theta


def _evaluate(
    theta: jax.Array, data: _Data, innovations: Innovations, *, outer: bool = False
) -> _Evaluation:
    """The objective at ``theta (windows, d)``, its gradient, and the BHHH matrix if asked."""
    n = data.returns.shape[0]
    jac = _jacobian(theta, data, innovations)
    params = _to_params(theta, data.mean, data.var, innovations)
    s = _scores(params, data.returns, data.start, innovations, outer=outer)
    grad = -jnp.einsum("bki,bk->bi", jac, s.gradient) / n
    hessian = None
    if s.outer is not None:
        hessian = jnp.einsum("bki,bkl,blj->bij", jac, s.outer, jac) / n
    return _Evaluation(-s.loglikelihood / n, grad, hessian)


class _State(NamedTuple):
    """Each window's BFGS: its point, the step it is trying, and whether it still runs."""

    theta: jax.Array  # (windows, d)
    value: jax.Array
    grad: jax.Array
    inverse_hessian: jax.Array  # (windows, d, d)
    direction: jax.Array
    step: jax.Array  # the trial point is theta + step * direction
    running: jax.Array
    iterations: jax.Array


def _longest(direction: jax.Array) -> jax.Array:
    """The first trial step along ``direction``: 1, or shorter to keep it within reach."""
    return jnp.minimum(1.0, _MAX_STEP / jnp.linalg.norm(direction, axis=-1))


def _start(theta: jax.Array, at: _Evaluation, max_iter: int, tol: float) -> _State:
    """BFGS from ``theta``, its first inverse Hessian the BHHH matrix's inverse."""
    assert at.hessian is not None
    inverse_hessian = jnp.linalg.inv(at.hessian)
    direction = -jnp.einsum("bij,bj->bi", inverse_hessian, at.grad)
    # a singular BHHH matrix (no usable direction) starts from steepest descent
    usable = jnp.all(jnp.isfinite(direction), -1) & (jnp.einsum("bi,bi->b", direction, at.grad) < 0)
    eye = jnp.broadcast_to(jnp.eye(theta.shape[-1], dtype=theta.dtype), inverse_hessian.shape)
    inverse_hessian = jnp.where(usable[:, None, None], inverse_hessian, eye)
    direction = jnp.where(usable[:, None], direction, -at.grad)
    running = jnp.isfinite(at.value) & (jnp.linalg.norm(at.grad, axis=-1) >= tol)
    return _State(
        theta=theta,
        value=at.value,
        grad=at.grad,
        inverse_hessian=inverse_hessian,
        direction=direction,
        step=_longest(direction),
        running=running & (max_iter > 0),
        iterations=jnp.zeros(theta.shape[:1], jnp.int32),
    )


def _bfgs_update(h: jax.Array, s: jax.Array, y: jax.Array) -> jax.Array:
    """``H+ = (I - rho s y') H (I - rho y s') + rho s s'``, kept as is unless ``s'y > 0``."""
    sy = jnp.einsum("bi,bi->b", s, y)
    curved = sy > 1e-10 * jnp.linalg.norm(s, axis=-1) * jnp.linalg.norm(y, axis=-1)
    rho = (1.0 / jnp.where(curved, sy, 1.0))[:, None, None]
    v = jnp.eye(s.shape[-1], dtype=s.dtype) - rho * s[:, :, None] * y[:, None, :]
    updated = jnp.einsum("bij,bjk,blk->bil", v, h, v) + rho * s[:, :, None] * s[:, None, :]
    return jnp.where(curved[:, None, None], updated, h)


def _pass(
    state: _State, data: _Data, innovations: Innovations, max_iter: int, tol: float
) -> _State:
    """One batched evaluation: each window accepts its trial point or shortens its step."""
    trial = state.theta + state.step[:, None] * state.direction
    value, grad, _ = _evaluate(trial, data, innovations)
    # the decrease the step's slope predicts (negative: a descent direction)
    slope = jnp.einsum("bi,bi->b", state.grad, state.direction) * state.step
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad), -1)
    accept = state.running & finite & (value <= state.value + _ARMIJO * slope)

    # accepted: the BFGS update, and the next step from the new point
    inverse_hessian = _bfgs_update(state.inverse_hessian, trial - state.theta, grad - state.grad)
    # A coordinate past _FREEZE_AT has run off to its boundary (alpha = 0, say, at a sigmoid
    # of 1e-13) where the likelihood no longer changes with it: it is held there, its row
    # and column of the inverse Hessian dropped, so that its vanishing curvature does not
    # take the capped step over from the others.
    free = (jnp.abs(trial) < _FREEZE_AT).astype(trial.dtype)
    inverse_hessian = inverse_hessian * free[:, :, None] * free[:, None, :]
    direction = -jnp.einsum("bij,bj->bi", inverse_hessian, grad)
    iterations = state.iterations + accept
    done = (jnp.linalg.norm(grad, axis=-1) < tol) | (iterations >= max_iter)

    # rejected: the step to the minimum of the quadratic through the value, the slope and
    # the trial's value, kept within [0.1, 0.5] of the step (0.1 if that value is not finite)
    curvature = 2.0 * (value - state.value - slope)
    ratio = -slope / jnp.where(curvature > 0, curvature, 1.0)
    shorter = state.step * jnp.where(finite & (curvature > 0), jnp.clip(ratio, 0.1, 0.5), 0.1)

    keep = accept[:, None]
    return _State(
        theta=jnp.where(keep, trial, state.theta),
        value=jnp.where(accept, value, state.value),
        grad=jnp.where(keep, grad, state.grad),
        inverse_hessian=jnp.where(keep[:, :, None], inverse_hessian, state.inverse_hessian),
        direction=jnp.where(keep, direction, state.direction),
        step=jnp.where(accept, _longest(direction), shorter),
        running=jnp.where(accept, ~done, state.running & (shorter > _MIN_STEP)),
        iterations=iterations,
    )


def _start_grid(innovations: Innovations, dtype: jnp.dtype) -> jax.Array:
    rows = []
    for p in _START_PERSISTENCE:
        for share in _START_ARCH_SHARE:
            row = [0.0, math.log(1.0 - p), math.log(p / (1.0 - p)), math.log(share / (1.0 - share))]
            if innovations == "t":
                of_range = (_START_NU - 2.0) / (_NU_MAX - 2.0)
                row.append(math.log(of_range / (1.0 - of_range)))
            rows.append(row)
    return jnp.asarray(rows, dtype=dtype)


@partial(jax.jit, static_argnames=("innovations", "max_iter", "tol"))
def _fit_batch(returns: jax.Array, innovations: Innovations, max_iter: int, tol: float) -> GarchFit:
    """Fit each row of ``returns (windows, n)``."""
    data = _Data(
        returns=returns.T,
        start=jax.vmap(backcast)(returns),
        mean=jnp.mean(returns, axis=-1),
        var=jnp.var(returns, axis=-1),
    )
    grid = _start_grid(innovations, returns.dtype)[:, None, :]  # (starts, 1, d)
    values = _value(
        _to_params(grid, data.mean, data.var, innovations),
        data.returns,
        data.start,
        innovations,
    )  # (starts, windows): one pass, the starts broadcast against the windows
    best = jnp.argmin(jnp.where(jnp.isfinite(values), -values, jnp.inf), axis=0)
    theta = grid[best, 0]
    state = _start(theta, _evaluate(theta, data, innovations, outer=True), max_iter, tol)
    state = jax.lax.while_loop(
        lambda s: jnp.any(s.running),
        lambda s: _pass(s, data, innovations, max_iter, tol),
        state,
    )

    params = _to_params(state.theta, data.mean, data.var, innovations)
    loglikelihood, h = jax.vmap(lambda p, r, b: _loglikelihood(p, r, b, innovations))(
        params, returns, data.start
    )
    last_residual = returns[:, -1] - params.mu
    gradient_norm = jnp.linalg.norm(state.grad, axis=-1)
    return GarchFit(
        params=params,
        loglikelihood=loglikelihood,
        converged=(gradient_norm < tol) & jnp.isfinite(state.value),
        iterations=state.iterations,
        gradient_norm=gradient_norm,
        variances=h,
        next_variance=params.omega + params.alpha * last_residual**2 + params.beta * h[:, -1],
        last_residual=last_residual,
    )


def fit_garch(
    returns: np.typing.ArrayLike,
    innovations: Innovations = "normal",
    *,
    max_iter: int = 200,
    tol: float = 1e-7,
) -> GarchFit:
    """Fit GARCH(1,1) to percent log returns ``(..., n)``: one batched call over ``...``."""
    if innovations not in ("normal", "t"):
        raise ValueError(f"innovations must be 'normal' or 't', not {innovations!r}")
    with jax.enable_x64(True):
        r = jnp.asarray(returns, dtype=jnp.float64)
        if r.ndim < 1 or r.shape[-1] < 2:
            raise ValueError("need at least two returns along the last axis")
        batch = r.shape[:-1]
        rows = r.reshape((-1, r.shape[-1]))
        count = rows.shape[0]
        # XLA's CPU loops treat a batch's last, partial group of vector lanes differently
        # in the last bits; with copies of the last window as padding, every window sits
        # in a full group and its fit does not depend on how many came with it
        extra = -count % _BATCH_MULTIPLE
        rows = jnp.concatenate([rows, jnp.broadcast_to(rows[-1:], (extra, rows.shape[-1]))])
        fit = _fit_batch(rows, innovations, max_iter, tol)
        return jax.tree.map(lambda x: x[:count].reshape(batch + x.shape[1:]), fit)


def garch_loglikelihood(
    params: GarchParams,
    returns: np.typing.ArrayLike,
    innovations: Innovations = "normal",
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
