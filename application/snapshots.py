"""Snapshots of aggregates whose state is more than plain JSON.

eventsourcing's ``Snapshot`` stores an aggregate's ``__dict__`` through the application's
JSON transcoder, which refuses our value objects (``ModelVersion``, ``Role``,
``PromptVersion`` …) and silently turns ``int`` keys (``Model.versions``) into strings
and tuples into lists. ``StateSnapshot`` encodes the state first into tagged plain JSON
that decodes back to the same Python values: dataclasses and plain objects by their
topic and fields, dicts with keys that are not strings as pairs, tuples, sets, UUIDs,
dates and decimals by a tag. A snapshot is a cache of a replay, never the record:
``replay_as_of`` and the audit read events alone, and the snapshots tables can be
emptied at any time (loading then replays from the first event).

The shape of an aggregate's state is versioned like an event's: when it changes, the
aggregate gets ``class_version`` and ``upcast_vX_vY`` static methods that upcast the
state of older snapshots (``docs/events.md``); the golden log test fails until it does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import uuid
from typing import Any

from eventsourcing.domain import Snapshot
from eventsourcing.utils import get_topic, resolve_topic

TAG = "__aimm__"


def encode_state(value: Any) -> Any:  # noqa: PLR0911 - one branch per kind of value
    """``value`` as plain JSON values (see the module)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [encode_state(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and TAG not in value:
            return {k: encode_state(v) for k, v in value.items()}
        return {TAG: "dict", "v": [[encode_state(k), encode_state(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {TAG: "tuple", "v": [encode_state(v) for v in value]}
    if isinstance(value, set | frozenset):
        kind = "frozenset" if isinstance(value, frozenset) else "set"
        return {TAG: kind, "v": [encode_state(v) for v in value]}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, dt.datetime):
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "v": str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode_state(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {TAG: "object", "topic": get_topic(type(value)), "v": fields}
    if hasattr(value, "__dict__"):
        return {TAG: "object", "topic": get_topic(type(value)), "v": encode_state(vars(value))}
    raise TypeError(f"cannot snapshot a {type(value).__qualname__}")


def decode_state(value: Any) -> Any:  # noqa: PLR0911 - one branch per tag
    """The Python value ``encode_state`` encoded."""
    if isinstance(value, list):
        return [decode_state(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(TAG)
    if kind is None:
        return {k: decode_state(v) for k, v in value.items()}
    raw = value["v"]
    if kind == "dict":
        return {_hashable(decode_state(k)): decode_state(v) for k, v in raw}
    if kind == "tuple":
        return tuple(decode_state(v) for v in raw)
    if kind in ("set", "frozenset"):
        items = [_hashable(decode_state(v)) for v in raw]
        return frozenset(items) if kind == "frozenset" else set(items)
    if kind == "uuid":
        return uuid.UUID(raw)
    if kind == "datetime":
        return dt.datetime.fromisoformat(raw)
    if kind == "date":
        return dt.date.fromisoformat(raw)
    if kind == "decimal":
        return decimal.Decimal(raw)
    if kind == "object":
        cls = resolve_topic(value["topic"])
        obj = object.__new__(cls)
        for name, item in decode_state(raw).items():
            object.__setattr__(obj, name, item)
        return obj
    raise ValueError(f"unknown snapshot tag {kind!r}")


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclasses.dataclass(frozen=True)
class StateSnapshot(Snapshot):
    """A snapshot whose ``state`` is stored as ``encode_state`` makes it (see the module)."""

    @classmethod
    def take(cls, aggregate: Any) -> StateSnapshot:
        snapshot = super().take(aggregate)
        object.__setattr__(snapshot, "state", encode_state(snapshot.state))
        return snapshot

    def mutate(self, _: None) -> Any:
        decoded = object.__new__(type(self))
        decoded.__dict__.update(vars(self))
        object.__setattr__(decoded, "state", decode_state(self.state))
        return Snapshot.mutate(decoded, None)
