"""Encryption at rest for sensitive fields (AES-256-GCM, key ring) and the keyed blind index."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.core.config import get_settings


@dataclass(frozen=True)
class KeyRing:
    keys: dict[str, bytes]
    active: str
    blind_key: bytes


def _load_or_create_file(path: os.PathLike[str] | str) -> dict[str, str]:
    from pathlib import Path

    p = Path(path)
    if p.exists():
        data: dict[str, str] = orjson.loads(p.read_bytes())
        return data
    p.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "kid": "k1",
        "k1": base64.b64encode(secrets.token_bytes(32)).decode(),
        "blind": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(data))
    return data


@lru_cache
def key_ring() -> KeyRing:
    s = get_settings()
    if s.encryption_keys and s.encryption_active_key and s.blind_index_key:
        keys = {kid: base64.b64decode(v) for kid, v in s.encryption_keys.items()}
        active, blind = s.encryption_active_key, base64.b64decode(s.blind_index_key)
    else:
        data = _load_or_create_file(s.key_file)
        active = data["kid"]
        keys = {k: base64.b64decode(v) for k, v in data.items() if k not in {"kid", "blind"}}
        blind = base64.b64decode(data["blind"])
    if active not in keys or any(len(k) != 32 for k in keys.values()):
        raise RuntimeError("encryption keys must be 32 bytes and include the active key id")
    return KeyRing(keys=keys, active=active, blind_key=blind)


def normalize(value: str) -> str:
    """One canonical form per ID or account number: no spaces or dashes, upper case."""
    return "".join(ch for ch in value if ch.isalnum()).upper()


def encrypt(value: str, *, aad: str) -> tuple[bytes, str]:
    """Ciphertext (nonce ‖ data ‖ tag) and the key id used. `aad` binds it to its field."""
    ring = key_ring()
    nonce = secrets.token_bytes(12)
    data = AESGCM(ring.keys[ring.active]).encrypt(nonce, value.encode(), aad.encode())
    return nonce + data, ring.active


def decrypt(blob: bytes, key_id: str, *, aad: str) -> str:
    ring = key_ring()
    return AESGCM(ring.keys[key_id]).decrypt(blob[:12], blob[12:], aad.encode()).decode()


def blind_index(value: str, *, field: str) -> str:
    """Keyed HMAC of the normalized value: exact-match search without storing the value."""
    mac = hmac.new(key_ring().blind_key, f"{field}:{normalize(value)}".encode(), hashlib.sha256)
    return mac.hexdigest()


def mask_identifier(value: str | None) -> str | None:
    """110***********1234: first three, last four."""
    if not value:
        return value
    v = normalize(value)
    if len(v) <= 7:
        return "*" * len(v)
    return v[:3] + "*" * (len(v) - 7) + v[-4:]


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_resident_id(value: str) -> bool:
    """The GB 11643 checksum of an 18-character mainland resident ID number."""
    v = normalize(value)
    if len(v) != 18 or not v[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(v[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == v[17]
