"""GARCH(1,1) rolling-origin fits: one batched JAX call against ``arch`` fitting one by one.

    .venv/bin/python -m benchmarks.garch [--origins 1000] [--window 1000]
        [--innovations normal t] [--repeats 5]

The windows are the last ``origins`` windows of ``window`` percent log returns of the
sample S&P 500 (``data/sample/SP500.csv.gz``), each ending one day after the previous.
For each kind of innovations asked for (both by default), in the same run: JAX fits them
all in one call of :func:`infrastructure.forecasting.garch.fit_garch`, the first call
(which compiles) timed apart and the steady-state time the median of ``repeats`` more
calls on the same windows; then ``arch`` 8 (a test-only dependency) fits the same windows
one by one with ``arch_model(..., vol="GARCH", p=1, q=1, dist=...).fit(disp="off")``.
Printed per case: both times, the ratio ``arch / jax`` (goal >= 10), how many fits each
reports converged, JAX's BFGS steps (mean and largest), and the largest log-likelihood
difference (goal <= 0.1). The machine is shared: the JAX times are printed as a median
with the fastest and slowest beside it.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

from infrastructure.forecasting.garch import Innovations, fit_garch, percent_log_returns

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "SP500.csv.gz"


def windows(origins: int, window: int) -> np.ndarray:
    with gzip.open(SAMPLE, "rt") as handle:
        closes = np.loadtxt(handle, delimiter=",", skiprows=1, usecols=4)
    returns = percent_log_returns(closes)
    if origins + window - 1 > returns.shape[0]:
        raise SystemExit(f"the sample has {returns.shape[0]} returns, too few")
    ends = np.arange(returns.shape[0] - origins + 1, returns.shape[0] + 1)
    return np.stack([returns[end - window : end] for end in ends])


def arch_one_by_one(data: np.ndarray, innovations: Innovations) -> tuple[float, np.ndarray, int]:
    from arch import arch_model  # test-only dependency

    loglikelihoods = np.empty(data.shape[0])
    converged = 0
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arch's data-scale and convergence warnings
        for i, row in enumerate(data):
            result = arch_model(row, vol="GARCH", p=1, q=1, dist=innovations).fit(disp="off")
            loglikelihoods[i] = result.loglikelihood
            converged += int(result.convergence_flag == 0)
    return time.perf_counter() - start, loglikelihoods, converged


def compare(data: np.ndarray, innovations: Innovations, repeats: int) -> None:
    origins, window = data.shape
    print(f"\n{origins} windows of {window} returns, {innovations} innovations")
    start = time.perf_counter()
    fit_garch(data, innovations).loglikelihood.block_until_ready()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fit = fit_garch(data, innovations)
        fit.loglikelihood.block_until_ready()
        times.append(time.perf_counter() - start)
    jax_time = statistics.median(times)
    arch_time, reference, arch_converged = arch_one_by_one(data, innovations)

    diff = np.asarray(fit.loglikelihood) - reference
    steps = np.asarray(fit.iterations)
    print(f"  jax, one batched call: {jax_time:8.2f} s  median of {repeats} "
          f"(fastest {min(times):.2f} s, slowest {max(times):.2f} s; "
          f"first call, with compilation: {first:.2f} s)")  # fmt: skip
    print(f"  arch, one by one:      {arch_time:8.2f} s")
    print(f"  ratio arch / jax:      {arch_time / jax_time:8.1f}x  (goal >= 10; against the "
          f"first call: {arch_time / first:.1f}x)")  # fmt: skip
    print(f"  converged: jax {int(np.sum(np.asarray(fit.converged)))}/{origins}, "
          f"arch {arch_converged}/{origins}; jax BFGS steps: mean {steps.mean():.1f}, "
          f"largest {steps.max()}")  # fmt: skip
    print(f"  log-likelihood, jax - arch: largest |diff| {np.max(np.abs(diff)):.2e} "
          f"(goal <= 0.1), min {diff.min():.2e}, max {diff.max():.2e}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origins", type=int, default=1000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument(
        "--innovations", nargs="+", choices=["normal", "t"], default=["normal", "t"]
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    data = windows(args.origins, args.window)
    print(time.strftime("%Y-%m-%d %H:%M"), "GARCH(1,1) fits, jax vs arch, same run")
    for innovations in args.innovations:
        compare(data, innovations, args.repeats)


if __name__ == "__main__":
    main()
