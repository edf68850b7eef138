"""How every long-running loop survives the database going away: one retry policy.

The projector, the training worker (its claim loop and its lease heartbeat), the
Kafka relay and the model registrar all follow a log or a queue whose position is
stored in the database, so resuming after a lost connection is simply reading it
again. Each loop wraps one unit of work (a batch, a claim, a renewal) in
``retrying(...)``/``retrying_async(...)``: on an error it logs **one line** (what
failed, the error, the next delay; no traceback), waits with exponential backoff —
``INITIAL`` seconds doubling to at most ``CAP``, with up to ``JITTER`` seconds of
random jitter, so that restarted services do not reconnect in lockstep — and runs the
unit again; the first success resets the delay. A stop request (the loop's event)
cuts the wait short and ends the loop.

Built on tenacity (``wait_exponential_jitter`` and its retrying controllers) rather
than a hand-written loop: the backoff arithmetic, the attempt bookkeeping and the
``before_sleep`` hook are its job. The loops retry on any ``Exception``: a handler bug
keeps failing, loudly, at the capped delay, instead of skipping events, and the
failed unit has rolled back with its position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import tenacity

T = TypeVar("T")

INITIAL = 0.2  # seconds before the first retry
CAP = 10.0  # the longest wait between two attempts
JITTER = 0.5  # at most this much is added at random to each wait


class _StopWhen(tenacity.stop.stop_base):
    """Stop retrying once the loop's stop flag is set."""

    def __init__(self, is_set: Callable[[], bool]) -> None:
        self.is_set = is_set

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.is_set()


def _wait() -> tenacity.wait.wait_base:
    return tenacity.wait_exponential_jitter(multiplier=INITIAL, max=CAP, jitter=JITTER)


def _log_one_line(logger: logging.Logger, what: str) -> Any:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "%s failed (attempt %d): %s: %s; retrying in %.1fs",
            what,
            state.attempt_number,
            type(error).__name__,
            str(error).strip().splitlines()[0] if error and str(error).strip() else "",
            delay,
            # the first failure of a series that is not a lost connection (a bug, most
            # likely) is logged with its traceback
            exc_info=error
            if state.attempt_number == 1 and error and not lost_connection(error)
            else None,
        )

    return before_sleep


def retrying(logger: logging.Logger, what: str, stopping: threading.Event) -> tenacity.Retrying:
    """A tenacity controller for a thread's loop: ``for attempt in retrying(...): with
    attempt: <unit>``. Stops retrying (re-raising the last error) once ``stopping`` is set."""

    def sleep(seconds: float) -> None:
        stopping.wait(seconds)

    return tenacity.Retrying(
        wait=_wait(),
        stop=_StopWhen(stopping.is_set),
        sleep=sleep,
        before_sleep=_log_one_line(logger, what),
        reraise=True,
    )


def retrying_async(
    logger: logging.Logger, what: str, stop: asyncio.Event
) -> tenacity.AsyncRetrying:
    """The same for a coroutine's loop: ``async for attempt in retrying_async(...)``."""

    async def sleep(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)

    return tenacity.AsyncRetrying(
        wait=_wait(),
        stop=_StopWhen(stop.is_set),
        sleep=sleep,
        before_sleep=_log_one_line(logger, what),
        reraise=True,
    )


_CONNECTION_WORDS = ("Connection", "Interface", "Operational", "AdminShutdown", "CannotConnect")


# Processes that start together (a worker's registrar and scorer) create the event
# store's tables and functions at once; PostgreSQL refuses the loser's catalog update
# with this message. Retried like a lost connection, and as quietly: it is not a bug.
_TRANSIENT_MESSAGES = ("tuple concurrently updated",)


def lost_connection(error: BaseException) -> bool:
    """Whether ``error`` says the database (or broker) went away, or another process's
    concurrent start-up got in the way, rather than a bug."""
    if isinstance(error, OSError | TimeoutError):
        return True
    if any(message in str(error) for message in _TRANSIENT_MESSAGES):
        return True
    name = type(error).__name__
    return any(word in name for word in _CONNECTION_WORDS)


def run_until_stopped(
    logger: logging.Logger, what: str, stopping: threading.Event, unit: Callable[[], T]
) -> T | None:
    """Run ``unit`` until it returns, retrying with backoff; None if stopped meanwhile."""
    try:
        for attempt in retrying(logger, what, stopping):
            with attempt:
                return unit()
    except Exception:
        if stopping.is_set():
            return None
        raise
    return None


async def run_async_until_stopped(
    logger: logging.Logger, what: str, stop: asyncio.Event, unit: Callable[[], Awaitable[T]]
) -> T | None:
    """The same for a coroutine: ``await unit()`` until it returns."""
    try:
        async for attempt in retrying_async(logger, what, stop):
            with attempt:
                return await unit()
    except Exception:
        if stop.is_set():
            return None
        raise
    return None
