"""What every context's Application shares: positions, concurrency, idempotency, errors.

A command returns a :class:`CommandResult` whose ``position`` is the notification id
of its last stored event in the context's log: a query can wait for the projections to
reach it (read-your-writes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.persistence import IntegrityError

from application.ports import Ports
from application.snapshots import StateSnapshot
from domain.base import Aggregate
from domain.claims import IdempotencyRecord
from domain.errors import (
    ConflictError,
    IdempotencyKeyReusedError,
    NotFoundError,
    VersionConflictError,
)

T = TypeVar("T")
A = TypeVar("A", bound=Aggregate)

# The stored first response: (HTTP status code, JSON-able body).
Response = tuple[int, Any]

# Long-lived aggregates (a model's deploys, the assistant's configuration, a training run's
# points) are snapshotted every this many events, so loading one reads at most this many
# events after its latest snapshot (figures: benchmarks/snapshots.py). Snapshots are only a
# cache of a replay: ``replay_as_of`` and the audit read events alone, never snapshots.
SNAPSHOT_INTERVAL = 100


@dataclass(frozen=True)
class CommandResult(Generic[T]):
    """The outcome of a command: its value and the log position of its last event."""

    context: str
    position: int
    value: T
    replayed: bool = False  # True when an Idempotency-Key retry returned the first answer


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key, the request it came with, and how to render the response."""

    principal: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: Any


class ContextApplication(Application[UUID]):
    """Base of the five context applications; ``name`` names the events table."""

    name = "context"

    def __init__(self, env: Mapping[str, str] | None = None, ports: Ports | None = None) -> None:
        """``ports``: the stores this context uses (see ``application.ports``); None when
        only its log is read (eventsourcing's projection runners build it so)."""
        super().__init__(env=env)
        self.ports = ports

    def take_snapshot(
        self,
        aggregate_id: UUID,
        version: int | None = None,
        projector_func: Any = project_aggregate,
    ) -> None:
        """The library's, with ``StateSnapshot`` (``application.snapshots``) instead of the
        aggregate's own ``Snapshot`` class, whose plain JSON cannot hold our state."""
        if self.snapshots is None:
            raise AssertionError(f"{self.name} has no snapshots store")
        aggregate = self.repository.get(
            aggregate_id, version=version, projector_func=projector_func
        )
        self.snapshots.put([StateSnapshot.take(aggregate)])

    def load(self, aggregate_id: UUID, kind: type[A], what: str = "aggregate") -> A:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFoundError(f"{what} {aggregate_id} not found") from None
        if not isinstance(aggregate, kind):
            raise NotFoundError(f"{what} {aggregate_id} not found")
        return aggregate

    @staticmethod
    def check_expected_version(aggregate: Aggregate, expected: int | None) -> None:
        if expected is not None and expected != aggregate.version:
            raise VersionConflictError(expected, aggregate.version)

    def idempotent_replay(self, idem: Idempotency | None) -> CommandResult[StoredResponse] | None:
        """The first response to this key, if the command already ran with it."""
        if idem is None:
            return None
        record_id = IdempotencyRecord.id_for(idem.principal, idem.key)
        try:
            record: Aggregate = self.repository.get(record_id)
        except AggregateNotFoundError:
            return None
        assert isinstance(record, IdempotencyRecord)
        if record.fingerprint != idem.fingerprint:
            raise IdempotencyKeyReusedError(
                "this Idempotency-Key was already used with a different request"
            )
        position = self.recorder.max_notification_id() or 0
        return CommandResult(
            self.name, position, StoredResponse(record.status_code, record.response), True
        )

    def save_command(
        self,
        aggregates: Sequence[Aggregate],
        idem: Idempotency | None,
        respond: Callable[[], Response],
        on_conflict: Callable[[], Exception],
    ) -> CommandResult[StoredResponse]:
        """Save the command's aggregates, and the idempotency record, atomically.

        ``on_conflict`` explains an integrity conflict that is not a concurrent retry
        of the same idempotent request (a stale version, a taken name).
        """
        status, body = respond()
        pending: list[Aggregate] = list(aggregates)
        if idem is not None:
            pending.append(
                IdempotencyRecord.record(
                    principal=idem.principal,
                    key=idem.key,
                    fingerprint=idem.fingerprint,
                    status_code=status,
                    response=body,
                )
            )
        try:
            recordings = self.save(*pending)
        except IntegrityError:
            replay = self.idempotent_replay(idem)
            if replay is not None:
                return replay
            raise on_conflict() from None
        position = max((r.notification.id for r in recordings), default=0)
        return CommandResult(self.name, position, StoredResponse(status, body))

    def change_aggregate(  # noqa: PLR0913
        self,
        load: Callable[[], A],
        act: Callable[[A], T],
        respond: Callable[[A, T], Response],
        *,
        expected_version: int | None = None,
        idem: Idempotency | None = None,
        retry: bool = False,
    ) -> CommandResult[StoredResponse]:
        """Load, check the expected version, act, save — or replay an idempotent retry.

        An act that triggers no event (nothing changed) saves nothing and answers as is.
        Another writer storing the same version first is a 409 naming the current
        version; with ``retry`` (a command that needs no expected version, racing a
        worker or a search that writes the same aggregate) it is simply run again on
        the new version.
        """
        for _ in range(20 if retry else 1):
            replay = self.idempotent_replay(idem)
            if replay is not None:
                return replay
            aggregate = load()
            self.check_expected_version(aggregate, expected_version)
            before = aggregate.version
            outcome = act(aggregate)
            if aggregate.version == before and idem is None:
                position = self.recorder.max_notification_id() or 0
                body = StoredResponse(*respond(aggregate, outcome))
                return CommandResult(self.name, position, body)
            try:
                return self.save_command(
                    [aggregate],
                    idem,
                    functools.partial(respond, aggregate, outcome),
                    functools.partial(self.version_conflict, aggregate.id, expected_version),
                )
            except VersionConflictError:
                if not retry:
                    raise
        raise ConflictError(f"{type(aggregate).__name__} {aggregate.id} kept changing; retry")

    def version_conflict(self, aggregate_id: UUID, expected: int | None) -> ConflictError:
        """The conflict to report when another writer won the race for this aggregate."""
        current: int = self.repository.get(aggregate_id).version
        return VersionConflictError(expected if expected is not None else current - 1, current)

    def replay_as_of(
        self, aggregate_id: UUID, as_of: datetime | None
    ) -> tuple[Aggregate, list[Any]]:
        """The aggregate rebuilt from its events up to ``as_of``, and those events."""
        stored: list[Any] = list(self.events.get(aggregate_id))
        events = [e for e in stored if as_of is None or e.timestamp <= as_of]
        if not events:
            raise NotFoundError(f"aggregate {aggregate_id} has no events as of {as_of}")
        aggregate: Any = None
        for event in events:
            aggregate = event.mutate(aggregate)
        return aggregate, events
