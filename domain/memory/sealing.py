"""Each memory's text is sealed under a key of its own (AES-256-GCM), so it can be erased.

What a memory's author wrote — content, entities, relations, tags, source — is one JSON
document, encrypted with the memory's own 256-bit key before any event holds it. The
nonce is random (12 bytes) and the memory id is the associated data, so a sealed
document cannot be moved to another memory unnoticed. The events keep only the sealed
text; the key lives in the key vault (``infrastructure.memory_keys``). Destroying the
key (erasure) leaves ciphertext that nothing can read: crypto-shredding, while the log
keeps every event (who wrote, who erased, when).
"""

from __future__ import annotations

import base64
import os
from typing import Any
from uuid import UUID

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class UnsealError(ValueError):
    """The sealed text does not open with this key for this memory."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, memory_id: UUID, document: dict[str, Any]) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, _encode(document), memory_id.bytes)
    return base64.b64encode(nonce + sealed).decode("ascii")


def unseal(key: bytes, memory_id: UUID, text: str) -> dict[str, Any]:
    try:
        raw = base64.b64decode(text, validate=True)
        plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], memory_id.bytes)
    except (InvalidTag, ValueError):  # a wrong key, moved or damaged text
        raise UnsealError(f"the text of memory {memory_id} does not open with its key") from None
    return _decode(plain)
