"""Tamper-evident hash chain over each context's log (``rm_audit_chain``), and its check.

For the event at position n of a context's log the projection stores
``hash_n = sha256(hash_(n-1) || canonical(context, position, aggregate id, version,
topic, stored state bytes))``, with 32 zero bytes before the first event. The canonical
bytes length-prefix every field, so no two different events share them. ``verify``
recomputes the chain from the raw ``<context>_events`` tables in one snapshot and
reports, per context, the first position where a stored event was changed, removed,
inserted or reordered since it was chained; events past the chain's head (not yet
projected) are counted as unchained, not judged.

Limits, by construction: the chain covers an event from the moment the projector hashes
it (near-live), and someone able to rewrite both the log and ``rm_audit_chain``
consistently can only be caught against a head hash kept elsewhere — ``verify`` reports
each context's head position and hash for that, and ``aimm audit checkpoint`` signs
them into a file (``infrastructure.audit_checkpoint``). Rebuilding this projection (``aimm
projections rebuild``) re-bases the chain on the log as it is then: verify first.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID

import asyncpg

from application.contexts import CONTEXTS
from projections.events import Event, events_table
from projections.registry_models import split_table

CHAIN_TABLE = "rm_audit_chain"
GENESIS = bytes(32)
COLUMNS = ("context", "position", "aggregate_id", "version", "prev_hash", "hash")
_NONE = (2**64 - 1).to_bytes(8, "big")  # the length prefix of an absent (NULL) field


def canonical(  # noqa: PLR0913
    context: str,
    position: int,
    aggregate_id: UUID,
    version: int,
    topic: str | None,
    state: bytes | None,
) -> bytes:
    """The bytes of one stored event that its link in the chain covers."""
    parts: tuple[bytes | None, ...] = (
        context.encode(),
        position.to_bytes(8, "big", signed=True),
        aggregate_id.bytes,
        version.to_bytes(8, "big", signed=True),
        None if topic is None else topic.encode(),
        None if state is None else bytes(state),
    )
    return b"".join(
        _NONE if part is None else len(part).to_bytes(8, "big") + part for part in parts
    )


def link(prev_hash: bytes, event_bytes: bytes) -> bytes:
    return hashlib.sha256(prev_hash + event_bytes).digest()


class AuditChain:
    """One link per stored event of every context, chained within each context."""

    name: ClassVar[str] = "audit_chain"
    contexts: ClassVar[tuple[str, ...]] = CONTEXTS
    tables: ClassVar[Mapping[str, Sequence[str]]] = {
        "audit_chain": (
            """
            CREATE TABLE {audit_chain} (
                context text NOT NULL,
                position bigint NOT NULL,
                aggregate_id uuid NOT NULL,
                version bigint NOT NULL,
                prev_hash bytea NOT NULL,
                hash bytea NOT NULL,
                PRIMARY KEY (context, position)
            )
            """,
        ),
    }

    async def apply(
        self, conn: asyncpg.Connection, tables: Mapping[str, str], events: Sequence[Event]
    ) -> None:
        table = tables["audit_chain"]
        heads: dict[str, bytes] = {}
        records = []
        for e in events:
            prev = heads.get(e.context)
            if prev is None:
                stored = await conn.fetchval(
                    f"SELECT hash FROM {table} WHERE context = $1 ORDER BY position DESC LIMIT 1",
                    e.context,
                )
                prev = GENESIS if stored is None else bytes(stored)
            digest = link(
                prev, canonical(e.context, e.position, e.aggregate_id, e.version, e.topic, e.state)
            )
            records.append((e.context, e.position, e.aggregate_id, e.version, prev, digest))
            heads[e.context] = digest
        schema, name = split_table(table)
        await conn.copy_records_to_table(name, schema_name=schema, columns=COLUMNS, records=records)


@dataclass(frozen=True)
class ChainBreak:
    """The first position of a context's log that no longer matches its chain."""

    position: int
    kind: str  # changed | removed | inserted | reordered | chain_altered
    detail: str


@dataclass(frozen=True)
class ContextVerification:
    context: str
    verified: int  # chained events whose stored bytes still match, before any break
    chained: int  # links in the chain
    unchained: int  # stored events past the chain's head, not hashed yet
    head_position: int  # the chain's last linked position (0: empty chain)
    head_hash: str | None  # its hash, hex: what to keep elsewhere as an anchor
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


@dataclass(frozen=True)
class Verification:
    contexts: list[ContextVerification]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.contexts)


async def verify(
    conn: asyncpg.Connection, context: str | None = None, batch_size: int = 5000
) -> Verification:
    """Recompute the chain of ``context`` (default: every context) from the raw logs."""
    if context is not None and context not in CONTEXTS:
        raise ValueError(f"context must be one of {', '.join(CONTEXTS)}")
    chosen = CONTEXTS if context is None else (context,)
    for table in (CHAIN_TABLE, *(events_table(c) for c in chosen)):
        if await conn.fetchval("SELECT to_regclass($1) IS NULL", table):
            raise LookupError(f"table {table} does not exist: run `aimm migrate` first")
    if conn.is_in_transaction():
        return Verification([await verify_context(conn, c, batch_size) for c in chosen])
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return Verification([await verify_context(conn, c, batch_size) for c in chosen])


async def link_hash(conn: asyncpg.Connection, context: str, position: int) -> str | None:
    """The chain's hash (hex) at ``position`` of ``context``'s log; None if no such link.
    Read to compare with a checkpoint (``infrastructure.audit_checkpoint``)."""
    value = await conn.fetchval(
        f"SELECT hash FROM {CHAIN_TABLE} WHERE context = $1 AND position = $2", context, position
    )
    return None if value is None else bytes(value).hex()


async def _scan(
    conn: asyncpg.Connection, query: str, batch_size: int, *args: Any
) -> AsyncIterator[asyncpg.Record]:
    """Rows of ``query`` (keyset on its first column: $1 after, $2 limit), batch by batch."""
    after = 0
    while True:
        rows = await conn.fetch(query, after, batch_size, *args)
        for row in rows:
            yield row
        if len(rows) < batch_size:
            return
        after = rows[-1][0]


def _event(aggregate_id: UUID, version: int) -> str:
    return f"(aggregate {aggregate_id}, version {version})"


async def verify_context(
    conn: asyncpg.Connection, context: str, batch_size: int = 5000
) -> ContextVerification:
    """Walk the raw log and the chain side by side, by position, until the first break."""
    raw = _scan(
        conn,
        "SELECT notification_id, originator_id, originator_version, topic, state "
        f"FROM {events_table(context)} WHERE notification_id > $1 "
        "ORDER BY notification_id LIMIT $2",
        batch_size,
    )
    chain = _scan(
        conn,
        "SELECT position, aggregate_id, version, prev_hash, hash FROM "
        f"{CHAIN_TABLE} WHERE context = $3 AND position > $1 ORDER BY position LIMIT $2",
        batch_size,
        context,
    )
    head = await conn.fetchrow(
        f"SELECT count(*) AS n, max(position) AS head FROM {CHAIN_TABLE} WHERE context = $1",
        context,
    )
    head_position = int(head["head"] or 0)
    head_hash = await conn.fetchval(
        f"SELECT hash FROM {CHAIN_TABLE} WHERE context = $1 AND position = $2",
        context,
        head_position,
    )
    prev, verified, broken = GENESIS, 0, None
    r = await anext(raw, None)
    c = await anext(chain, None)
    while c is not None:
        if r is None or r[0] > c["position"]:
            broken = ChainBreak(
                c["position"],
                "removed",
                f"the event chained at position {c['position']} "
                f"{_event(c['aggregate_id'], c['version'])} is no longer in the log",
            )
            break
        if r[0] < c["position"]:
            broken = ChainBreak(
                r[0],
                "inserted",
                f"the event at position {r[0]} {_event(r[1], r[2])} was never chained, "
                "but the chain covers later positions",
            )
            break
        if bytes(c["prev_hash"]) != prev:
            broken = ChainBreak(
                r[0],
                "chain_altered",
                f"the chain's link at position {r[0]} does not follow the one before it",
            )
            break
        if link(prev, canonical(context, r[0], r[1], r[2], r[3], r[4])) != bytes(c["hash"]):
            broken = await _mismatch(conn, context, r, c)
            break
        prev = bytes(c["hash"])
        verified += 1
        r = await anext(raw, None)
        c = await anext(chain, None)
    unchained = 0
    if broken is None:
        unchained = await conn.fetchval(
            f"SELECT count(*) FROM {events_table(context)} WHERE notification_id > $1",
            head_position,
        )
    return ContextVerification(
        context=context,
        verified=verified,
        chained=int(head["n"]),
        unchained=int(unchained),
        head_position=head_position,
        head_hash=None if head_hash is None else bytes(head_hash).hex(),
        broken=broken,
    )


async def _mismatch(
    conn: asyncpg.Connection, context: str, r: asyncpg.Record, c: asyncpg.Record
) -> ChainBreak:
    """Say what happened at a position whose stored event no longer hashes to its link."""
    position = r[0]
    stored = _event(r[1], r[2])
    following = await conn.fetchval(
        f"SELECT prev_hash FROM {CHAIN_TABLE} WHERE context = $1 AND position > $2 "
        "ORDER BY position LIMIT 1",
        context,
        position,
    )
    if following is not None and bytes(following) != bytes(c["hash"]):
        return ChainBreak(
            position,
            "chain_altered",
            f"the chain's link at position {position} was changed (the next link does not "
            "follow from it)",
        )
    if (r[1], r[2]) == (c["aggregate_id"], c["version"]):
        return ChainBreak(
            position, "changed", f"the stored event at position {position} {stored} was changed"
        )
    elsewhere = await conn.fetchval(
        f"SELECT position FROM {CHAIN_TABLE} WHERE context = $1 AND aggregate_id = $2 "
        "AND version = $3",
        context,
        r[1],
        r[2],
    )
    if elsewhere is not None:
        return ChainBreak(
            position,
            "reordered",
            f"the event chained at position {elsewhere} {stored} now stands at position "
            f"{position}, where {_event(c['aggregate_id'], c['version'])} was",
        )
    return ChainBreak(
        position,
        "changed",
        f"the event at position {position} {_event(c['aggregate_id'], c['version'])} "
        f"was replaced by {stored}",
    )
