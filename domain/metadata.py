"""Who and why of every event: the acting principal, correlation and causation ids.

The command side sets these once per request (or per process-manager reaction) in a
context variable; every event an aggregate triggers while it is set carries a copy.
A context variable keeps the aggregates' command methods free of plumbing arguments
while staying correct under threads and asyncio tasks.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

# principal, correlation_id and (for process managers) causation_id; plain strings so
# the stored JSON stays flat and cheap to decode on the read side.
EventMeta = dict[str, str]

SYSTEM_META: EventMeta = {"principal": "system", "correlation_id": "system"}

_current: contextvars.ContextVar[EventMeta] = contextvars.ContextVar(
    "aimm_event_meta", default=SYSTEM_META
)


def current_meta() -> EventMeta:
    """The metadata new events are stamped with (a copy, safe to keep)."""
    return dict(_current.get())


@contextlib.contextmanager
def acting_as(
    principal: str, correlation_id: str, causation_id: str | None = None
) -> Iterator[None]:
    """Stamp every event triggered inside the block with these ids."""
    meta = {"principal": principal, "correlation_id": correlation_id}
    if causation_id is not None:
        meta["causation_id"] = causation_id
    token = _current.set(meta)
    try:
        yield
    finally:
        _current.reset(token)
