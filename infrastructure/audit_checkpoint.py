"""Signed checkpoints of the audit chain: its heads, kept outside the database.

The hash chain (``projections.audit_chain``) catches a changed stored event, unless the
same hand also recomputes the chain after it. A checkpoint closes that gap: it records
each context's chain head (position and hash) at a moment, signed with an Ed25519 key
that does not live in the database (a file, ``aimm audit keygen``). Later,
``read`` confirms the signature with the public key, and ``check`` that the log and chain of
today still *extend* the checkpointed heads: the chain verifies against the log, and
its link at each checkpointed position still has the checkpointed hash. Rewriting an
event at or before a checkpointed position changes every hash from there on, so even
a consistently recomputed chain no longer meets the checkpoint.

Format (JSON, one file): ``{"format": "aimm-audit-checkpoint/1", "created_at": ...,
"heads": [{"context", "position", "hash"}], "public_key": <hex>, "signature": <hex>}``;
the signature covers the canonical JSON (sorted keys, no spaces) of everything but
``signature``. ``public_key`` is informative only: ``check`` verifies against the
public key it is *given*, never the one in the file (a forger would put their own).

Keys are PEM files: the private key PKCS#8, unencrypted, written with mode 0600 (keep
it offline, or on another machine than the database); the public key
SubjectPublicKeyInfo, beside it as ``<name>.pub``. The ``cryptography`` package signs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from projections.audit_chain import Verification, link_hash, verify

FORMAT = "aimm-audit-checkpoint/1"


class CheckpointError(Exception):
    """A checkpoint could not be written or read (bad key, bad file, broken chain)."""


@dataclass(frozen=True)
class HeadCheck:
    context: str
    position: int
    expected: str  # the checkpointed hash
    found: str | None  # the chain's hash at that position today (None: no such link)

    @property
    def ok(self) -> bool:
        return self.found == self.expected


@dataclass(frozen=True)
class CheckpointReport:
    created_at: str
    heads: list[HeadCheck]
    verification: Verification

    @property
    def ok(self) -> bool:
        return self.verification.ok and all(h.ok for h in self.heads)


def generate_key(path: Path) -> Path:
    """Write a new Ed25519 private key to ``path`` (0600) and its public key beside it."""
    if path.exists():
        raise CheckpointError(f"{path} exists: refusing to overwrite a signing key")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public = path.with_name(path.name + ".pub")
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot read the private key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path} is not an Ed25519 private key")
    return key


def _load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot read the public key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"{path} is not an Ed25519 public key")
    return key


def _signed_bytes(body: dict[str, Any]) -> bytes:
    return msgspec.json.encode(body, order="sorted")


def load_signing_key(key_file: Path) -> Ed25519PrivateKey:
    return _load_private(key_file)


def save(document: dict[str, Any], out: Path) -> None:
    out.write_bytes(msgspec.json.format(msgspec.json.encode(document)) + b"\n")


async def sign_heads(conn: asyncpg.Connection, private: Ed25519PrivateKey) -> dict[str, Any]:
    """The signed checkpoint document of the current chain heads (the chain verified first)."""
    verification = await verify(conn)
    if not verification.ok:
        raise CheckpointError(
            "the audit chain does not verify (see `aimm audit verify`): "
            "a checkpoint would vouch for a tampered log"
        )
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    body: dict[str, Any] = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "heads": [
            {"context": c.context, "position": c.head_position, "hash": c.head_hash}
            for c in verification.contexts
            if c.head_hash is not None
        ],
        "public_key": public.hex(),
    }
    return {**body, "signature": private.sign(_signed_bytes(body)).hex()}


def read(checkpoint: Path, public_key: Path) -> dict[str, Any]:
    """The checkpoint's body, once its signature checks out against ``public_key``."""
    public = _load_public(public_key)
    try:
        document = msgspec.json.decode(checkpoint.read_bytes())
    except (OSError, msgspec.DecodeError) as exc:
        raise CheckpointError(f"cannot read the checkpoint {checkpoint}: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{checkpoint} is not an {FORMAT} document")
    body = {k: v for k, v in document.items() if k != "signature"}
    try:
        public.verify(bytes.fromhex(str(document.get("signature", ""))), _signed_bytes(body))
    except (InvalidSignature, ValueError):
        raise CheckpointError(
            f"the signature of {checkpoint} does not verify with {public_key}: "
            "the checkpoint was altered or signed with another key"
        ) from None
    return body


async def check(
    conn: asyncpg.Connection, body: dict[str, Any], context: str | None = None
) -> CheckpointReport:
    """Verify the chain, and that it still passes through every head of ``body`` (a
    checkpoint whose signature ``read`` has checked)."""
    heads = [h for h in body["heads"] if context is None or h["context"] == context]
    if conn.is_in_transaction():
        return await _check(conn, body, heads, context)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _check(conn, body, heads, context)


async def _check(
    conn: asyncpg.Connection, body: dict[str, Any], heads: list[dict[str, Any]], context: str | None
) -> CheckpointReport:
    verification = await verify(conn, context)
    checks = []
    for head in heads:
        found = await link_hash(conn, head["context"], int(head["position"]))
        checks.append(HeadCheck(head["context"], int(head["position"]), head["hash"], found))
    return CheckpointReport(str(body["created_at"]), checks, verification)
