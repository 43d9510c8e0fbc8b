"""The service's settings, from arguments or ``TWINKIT_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from twinkit.core.twin import MetadataLimits

#: an admin token shorter than this is refused: it would be guessable
MIN_ADMIN_TOKEN_CHARS = 32
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


class ServiceSettings(BaseSettings):
    """How the service runs. The admin token has no default, on purpose.

    Each field reads ``TWINKIT_<FIELD>`` from the environment, e.g. ``TWINKIT_ADMIN_TOKEN``,
    ``TWINKIT_RATE_LIMIT_PER_MINUTE``.
    """

    model_config = SettingsConfigDict(env_prefix="TWINKIT_", extra="ignore")

    admin_token: SecretStr = Field(
        description="Bearer token of the administrator (creates owners, verifies the ledger)."
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above it)."
    )
    max_upload_rows: int = Field(
        100_000,
        ge=1,
        description="Most data rows one batch may hold, an uploaded file (.csv, .parquet, "
        ".jsonl) or the JSON rows of POST .../observations (413 above it; counted before a "
        "file is decoded). The JSON rows' schema caps them at 100,000 whatever this says.",
    )
    ingest_processes: int = Field(
        1,
        ge=0,
        le=64,
        description="Processes of each server process that decode and ingest uploads and "
        "JSON batches, so that one owner's batches do not hold the GIL that answers other "
        "owners' requests; 0 ingests in the worker's own threads.",
    )
    ingest_niceness: int = Field(
        5,
        ge=0,
        le=19,
        description="How much lower than the workers' the ingest processes' CPU priority is "
        "(nice): bulk writes yield the cores to the requests being answered; 0 keeps it "
        "equal.",
    )
    max_upload_columns: int = Field(
        2_000,
        ge=4,
        description="Most columns an uploaded file may have (413 above it): twin_id, item_id "
        "and label with the features of a decisions file; a signals file has four.",
    )
    max_upload_cells: int = Field(
        5_000_000,
        ge=4,
        description="Most cells (rows x columns) an uploaded file may have (413 above it): a "
        "few hundred KiB of Parquet can hold a table of gigabytes within the rows' and the "
        "columns' limits.",
    )
    rate_limit_per_minute: float = Field(
        600.0, gt=0, description="Requests a token may make per minute, on average."
    )
    rate_limit_burst: int = Field(
        60, ge=1, description="Requests a token may make at once before it is slowed down."
    )
    fit_workers: int = Field(
        1, ge=1, le=64, description="Fits run at the same time by one server process."
    )
    fit_timeout_s: float = Field(
        3600.0, gt=0, description="A fit still running after this long is stopped and failed."
    )
    max_jobs_per_owner: int = Field(
        8,
        ge=1,
        description="Jobs (fits, clone updates, robustness reports) one owner may have queued "
        "or running at once, over every server process of the store; past it a new one is "
        "refused with 429 and Retry-After. Owners' queued jobs are started in turn.",
    )
    monitor_interval_s: float = Field(
        900.0,
        ge=0,
        description="Seconds between the monitor's drift checks of the state twins whose "
        "data changed since the last round (0: no checks). Each server process checks; the "
        "ledger records a detection once, and a twin whose policy is refit gets one fit job.",
    )
    switch_interval_ms: float = Field(
        1.0,
        gt=0,
        le=100,
        description="The GIL switch interval of a served worker, in milliseconds (Python's "
        "default is 5): how long the event loop, answering cached forecasts, may wait for "
        "the GIL while a thread-pool thread ingests or computes a forecast.",
    )
    max_metadata_bytes: int = Field(
        MetadataLimits.max_bytes,
        ge=2,
        description="Largest metadata of a twin, in bytes of its JSON (422 above it).",
    )
    max_metadata_keys: int = Field(
        MetadataLimits.max_keys,
        ge=0,
        description="Most keys in a twin's metadata, the keys of nested objects included.",
    )
    max_metadata_depth: int = Field(
        MetadataLimits.max_depth,
        ge=1,
        description="Most levels of nested objects and arrays in a twin's metadata.",
    )
    cookie_secure: bool = Field(
        default=True,
        description="Mark the pages' login cookie Secure: browsers send it only over HTTPS "
        "(and to http://localhost or 127.0.0.1). Turn it off only to serve the pages over "
        "plain HTTP on a network you trust, or for clients that never send Secure cookies "
        "over HTTP (httpx's TestClient on http://testserver).",
    )

    @field_validator("admin_token")
    @classmethod
    def _strong_enough(cls, token: SecretStr) -> SecretStr:
        value = token.get_secret_value()
        if len(value) < MIN_ADMIN_TOKEN_CHARS or value != value.strip():
            raise ValueError(
                f"the admin token must have at least {MIN_ADMIN_TOKEN_CHARS} characters and no "
                f"surrounding spaces; make one with: {MAKE_TOKEN}"
            )
        return token
