"""Settings read from the environment (prefix-free names such as DATABASE_URL, CRM_*)."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_prefix="CRM_")

    # A real server skips the embedded one (SPEC §1). Read without the prefix, as is customary.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    embedded_pg_dir: Path = Path("var/pg")
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_statement_timeout_ms: int = 30_000

    # JWT: a random key per process is safe (tokens die with the process) but useless with
    # several instances, so production sets CRM_JWT_SECRET.
    jwt_secret: str = Field(default_factory=lambda: secrets.token_urlsafe(48))
    jwt_algorithm: str = "HS256"
    jwt_issuer: str = "crm-service"
    jwt_audience: str = "crm-api"
    access_token_minutes: int = 30
    refresh_token_days: int = 14

    argon2_memory_kib: int = 19_456  # OWASP's minimum for argon2id
    argon2_time_cost: int = 2

    login_max_failures: int = 5
    login_window_seconds: int = 300

    cors_origins: list[str] = []
    max_body_bytes: int = 2 * 1024 * 1024
    max_upload_bytes: int = 200 * 1024 * 1024
    # Imports: uploads are spooled here until their job finishes (a restarted process resumes
    # from the spooled file); XLSX files are zip archives and are checked before opening.
    import_spool_dir: Path = Path("var/imports")
    import_batch_rows: int = 5_000
    import_max_unzipped_bytes: int = 2 * 1024 * 1024 * 1024
    import_max_zip_ratio: int = 250
    import_max_attempts: int = 3
    page_size_default: int = 50
    page_size_max: int = 200

    timezone: str = "Asia/Shanghai"
    log_level: str = "INFO"

    first_admin_email: str = "admin@example.com"


@lru_cache
def get_settings() -> Settings:
    return Settings()
