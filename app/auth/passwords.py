"""Password and secret hashing (argon2 through passlib's maintained fork, libpass)."""

from __future__ import annotations

from functools import lru_cache

from passlib.context import CryptContext

from app.core.config import get_settings


@lru_cache
def _context() -> CryptContext:
    s = get_settings()
    return CryptContext(
        schemes=["argon2"],
        argon2__memory_cost=s.argon2_memory_kib,
        argon2__time_cost=s.argon2_time_cost,
        argon2__parallelism=1,
    )


def hash_secret(secret: str) -> str:
    return str(_context().hash(secret))


def verify_secret(secret: str, hashed: str) -> bool:
    try:
        return bool(_context().verify(secret, hashed))
    except (ValueError, TypeError):
        return False


@lru_cache
def _dummy_hash() -> str:
    return hash_secret("timing-equalizer-not-a-password")


def burn_verify(secret: str) -> None:
    """Spend the same time as a real check, so an unknown login is not told apart by timing."""
    verify_secret(secret, _dummy_hash())
