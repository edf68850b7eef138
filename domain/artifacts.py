"""Content addressing: an artifact's key is the SHA-256 of its bytes (``sha256:<hex>``)."""

from __future__ import annotations

import hashlib


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
