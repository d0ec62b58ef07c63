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
    # A fixed pool: SQLAlchemy closes an overflow connection as soon as it is returned while
    # the pool is full, so under steady load overflow means a connect (TLS attempt, startup,
    # type introspection) and a close per burst. Requests beyond the pool wait for a connection.
    db_pool_size: int = 20
    db_max_overflow: int = 0
    db_pool_timeout_seconds: float = 10.0
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

    request_timeout_seconds: float = 30.0
    # The two requests that recompute the whole base inside themselves (PUT
    # /segments/rules, POST /segments/recompute): a rule change that reclassifies most of a
    # large base takes minutes (about 4 at 1M customers).
    sweep_request_timeout_seconds: float = 1800.0
    # Serialization failures and deadlocks are retried this many times before a 503.
    db_retry_attempts: int = 3

    # Token buckets per process (each API instance enforces its own; see README).
    rate_limit_enabled: bool = True
    rate_limit_per_principal: float = 50.0  # requests per second, sustained
    rate_limit_principal_burst: int = 200
    rate_limit_per_ip: float = 200.0
    rate_limit_ip_burst: int = 800

    # The segmentation sweep inside each API process (SPEC §4); 0 disables the schedule (the
    # sweep still runs on demand: POST /segments/recompute, `crm recompute`).
    sweep_interval_seconds: float = Field(default=900, ge=0)

    # The sweep refits the churn model (BG/NBD) at most this often; a manual sweep always does.
    prediction_refit_hours: float = Field(default=24, ge=0)
    # Reports: an inbound interaction counts as answered when an outbound one follows on the
    # same customer within this many hours (the weekly report's `response_hours` overrides it).
    report_response_hours: int = Field(default=24, ge=1, le=720)

    # The busiest reads (GET /customers/{code}) and writes (POST /interactions, and the
    # webhook deliveries POST /webhooks/{slug}) answered without FastAPI's routing and
    # dependency solving (app.core.hotroutes); off only to compare the two ways.
    hot_reads: bool = True
    hot_writes: bool = True

    timezone: str = "Asia/Shanghai"
    log_level: str = "INFO"

    first_admin_email: str = "admin@example.com"

    # Sensitive fields (ID numbers, bank accounts): AES-256-GCM keys by key id (base64, 32
    # bytes), the key new writes use, and the HMAC key of the blind index. Unset, a key file
    # is generated under var/ on first use (development only; production sets these).
    encryption_keys: dict[str, str] = {}
    encryption_active_key: str | None = None
    blind_index_key: str | None = None
    key_file: Path = Path("var/keys.json")
    # Churned customers with no active consent are flagged for erasure after this long.
    retention_days: int = Field(default=3 * 365, ge=30)


@lru_cache
def get_settings() -> Settings:
    return Settings()
