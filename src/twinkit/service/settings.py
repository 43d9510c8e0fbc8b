"""The service's settings, from arguments or ``TWINKIT_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    switch_interval_ms: float = Field(
        1.0,
        gt=0,
        le=100,
        description="The GIL switch interval of a served worker, in milliseconds (Python's "
        "default is 5): how long the event loop, answering cached forecasts, may wait for "
        "the GIL while a thread-pool thread ingests or computes a forecast.",
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
