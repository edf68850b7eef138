"""Memory context: record (one or a batch), reinforce, invalidate, restore, erase, forget.

Recording seals each memory's text under a new key, writes the keys (one transaction),
then saves every memory — and the older memories they supersede, invalidated with a
link to their successor — in one ``save()``: a batch is all or nothing.

Erasure (crypto-shredding) is the command's alone: ``erase`` destroys the memory's key
*before* it saves the ``Erased`` event (after loading the memory and checking the
expected version, so a refused erasure destroys nothing). The key vault and the event
store are two stores, so the two steps cannot share one transaction; of the two orders
this one fails safe. If the save then fails (the database goes away, a writer keeps
winning the race), the command answers the error and the text is already unreadable in
the log; the memory's read-model row keeps its text until the ``Erased`` event is
recorded, so the rule is: **a failed erasure is retried until it succeeds** — ``erase``
is idempotent (an erased memory saves nothing, a missing key is no error), and a retry
records the event that makes the projection drop the text. The other order could leave
an ``Erased`` event whose key survives, silently readable. The projection never
destroys keys; it drops the rows.

Command responses carry ids, versions and strength, never the memory's text: an
``Idempotency-Key`` stores the first response in the log, and the log must hold no
plaintext of a memory that may be erased.

``agent_scope``: the agent an ``agent`` key is bound to. A memory of another agent is
reported as not found, so an agent cannot even learn that it exists.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import IntegrityError

from application.base import (
    SNAPSHOT_INTERVAL,
    CommandResult,
    ContextApplication,
    Idempotency,
    Response,
    StoredResponse,
)
from application.ports import EventReader, KeyVault, Ports, Unwired
from domain.errors import ConflictError, NotFoundError
from domain.memory.memory import Draft, Memory
from domain.memory.sealing import UnsealError, new_key, seal, unseal

MAX_BATCH = 1000


class MemoryApplication(ContextApplication):
    name = "memory"
    snapshotting_intervals = {Memory: SNAPSHOT_INTERVAL}

    def __init__(self, env: Mapping[str, str] | None = None, ports: Ports | None = None) -> None:
        super().__init__(env, ports)
        self.keys: KeyVault = ports.keys(self.recorder) if ports else Unwired("key vault")
        self.stored: EventReader = (
            ports.events(self.recorder, f"{self.name}_events") if ports else Unwired("event reader")
        )

    def get_memory(self, memory_id: UUID, agent_scope: str | None = None) -> Memory:
        memory = self.load(memory_id, Memory, "memory")
        if agent_scope is not None and memory.agent_id != agent_scope:
            raise NotFoundError(f"memory {memory_id} not found")
        return memory

    def document(self, memory: Memory) -> dict[str, Any] | None:
        """The memory's text, or None once erased (its key is gone)."""
        return _opened(memory, self.keys.get_many([memory.id]).get(memory.id))

    # -- commands -------------------------------------------------------------------------

    def record(
        self,
        drafts: Sequence[Draft],
        *,
        idem: Idempotency | None = None,
        respond: Callable[[list[Memory]], Response],
    ) -> CommandResult[StoredResponse]:
        """Record memories (one, or a batch of up to MAX_BATCH) in one transaction."""
        replay = self.idempotent_replay(idem)
        if replay is not None:
            return replay
        now = datetime.now(UTC)
        memories: list[Memory] = []
        keys: list[tuple[UUID, bytes]] = []
        superseded: dict[UUID, Memory] = {}
        for draft in drafts:
            memory_id, key = uuid4(), new_key()
            memory = Memory.record(memory_id, draft, seal(key, memory_id, draft.document), now)
            if draft.supersedes is not None:
                old = superseded.get(draft.supersedes) or self.get_memory(
                    draft.supersedes, draft.agent_id
                )
                old.invalidate(f"superseded by memory {memory_id}", superseded_by=memory_id)
                superseded[old.id] = old
            memories.append(memory)
            keys.append((memory_id, key))
        self.keys.put_many(keys)
        return self.save_command(
            [*memories, *superseded.values()],
            idem,
            lambda: respond(memories),
            lambda: ConflictError("a superseded memory changed at the same time; retry"),
        )

    def change(  # noqa: PLR0913
        self,
        memory_id: UUID,
        act: Callable[[Memory], object],
        respond: Callable[[Memory], Response],
        *,
        agent_scope: str | None = None,
        idem: Idempotency | None = None,
        expected_version: int | None = None,
    ) -> CommandResult[StoredResponse]:
        """Load, check ``expected_version`` (stale: 409 with the current version), act,
        save (a no-op act saves nothing); run again when a search's access reinforcement
        wins the race for the same version (with an expected version, that race is a
        409: the caller's version is stale)."""
        return self.change_aggregate(
            lambda: self.get_memory(memory_id, agent_scope),
            act,
            lambda memory, _: respond(memory),
            expected_version=expected_version,
            idem=idem,
            retry=True,
        )

    def erase(
        self,
        memory_id: UUID,
        reason: str,
        respond: Callable[[Memory], Response],
        *,
        idem: Idempotency | None = None,
        expected_version: int | None = None,
    ) -> CommandResult[StoredResponse]:
        """Destroy the key, then record ``Erased`` (the order and its rule: see the module)."""

        def act(memory: Memory) -> bool:
            self.keys.destroy(memory.id)
            return memory.erase(reason)

        return self.change(memory_id, act, respond, idem=idem, expected_version=expected_version)

    def forget(
        self,
        memory_ids: Sequence[UUID],
        reason: str,
        respond: Callable[[list[Memory]], Response],
        *,
        idem: Idempotency | None = None,
    ) -> CommandResult[StoredResponse]:
        """Invalidate up to MAX_BATCH memories (one page of a bulk forget) in one save,
        with the idempotency record. Memories erased or invalidated meanwhile are
        skipped; a memory that changes between loading and saving makes the whole page
        run again on fresh state (a few times, then 409)."""
        if len(memory_ids) > MAX_BATCH:
            raise ValueError(f"forget takes at most {MAX_BATCH} memories at once")
        for _ in range(5):
            replay = self.idempotent_replay(idem)
            if replay is not None:
                return replay
            chunk: list[Memory] = []
            for memory_id in memory_ids:
                try:
                    memory = self.get_memory(memory_id)
                except NotFoundError:
                    continue
                if not memory.erased and memory.invalidate(reason):
                    chunk.append(memory)
            try:
                return self.save_command(
                    chunk,
                    idem,
                    functools.partial(respond, chunk),
                    lambda: _Moved("a memory changed meanwhile"),
                )
            except _Moved:
                continue
        raise ConflictError("the agent's memories kept changing; retry")

    def access(self, memory_ids: Sequence[UUID], at: datetime | None = None) -> int:
        """Reinforce search hits (each at most once an hour); best effort: when one of
        them changed meanwhile none is. Returns the log position of the access events
        (0: nothing was reinforced)."""
        now = at or datetime.now(UTC)
        touched = []
        for memory_id in memory_ids:
            try:
                memory = self.get_memory(memory_id)
            except NotFoundError:
                continue
            if memory.access(now):
                touched.append(memory)
        if not touched:
            return 0
        try:
            recordings = self.save(*touched)
        except IntegrityError:
            return 0
        return max(r.notification.id for r in recordings)

    # -- history --------------------------------------------------------------------------

    def history(self, memory_id: UUID, agent_scope: str | None = None) -> tuple[Memory, list[Any]]:
        memory = self.get_memory(memory_id, agent_scope)
        return memory, list(self.events.get(memory_id))

    def as_of(
        self, memory_ids: Sequence[UUID], as_of: datetime
    ) -> list[tuple[Memory, dict[str, Any] | None]]:
        """Memories as they were at ``as_of`` (those recorded by then), with their text
        (None when erased since: the key is gone, the text cannot come back)."""
        keys = self.keys.get_many(list(memory_ids))
        found: list[tuple[Memory, dict[str, Any] | None]] = []
        for memory_id, events in self._events_of(memory_ids).items():
            state: Any = None
            for event in events:
                if event.timestamp > as_of:
                    break
                state = event.mutate(state)
            if not isinstance(state, Memory):
                continue  # recorded after as_of
            found.append((state, _opened(state, keys.get(memory_id))))
        return found

    def _events_of(self, memory_ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
        """The events of many memories, read in chunks of one query each (an agent's
        graph as of a time replays thousands of memories) and decoded by the
        application's mapper."""
        events: dict[UUID, list[Any]] = {i: [] for i in memory_ids}
        for stored in self.stored.stored_events(memory_ids):
            originator = stored.originator_id
            key = originator if isinstance(originator, UUID) else UUID(originator)
            events[key].append(self.mapper.to_domain_event(stored))
        return events


class _Moved(ConflictError):
    """A memory of a forget page was changed by another writer between load and save."""


def _opened(memory: Memory, key: bytes | None) -> dict[str, Any] | None:
    """The memory's sealed text opened with its key; None when erased or unopenable."""
    if key is None or memory.erased:
        return None
    try:
        return unseal(key, memory.id, memory.sealed)
    except UnsealError:
        return None
