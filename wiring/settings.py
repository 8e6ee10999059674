"""The one settings object, read from the environment (prefix ``INTAKE_``), validated at start-up.

Every component receives the settings it needs as an argument; nothing reads the environment at
import time.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]


# Every signature algorithm a token or DPoP proof may use (RFC 7518 §3.1, asymmetric only):
# what INTAKE_JOSE_ALGORITHMS may choose from, and its default.
JOSE_ALGORITHMS = ("ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    environment: Environment = "development"
    data_dir: Path = Path(".intake")

    # --- event log -------------------------------------------------------------------------
    event_log: Literal["embedded", "kafka"] = "embedded"
    kafka_bootstrap: str | None = None
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    topic_prefix: str = "intake"
    topic_partitions: int = Field(default=3, ge=1, le=256)
    # Topics a process creates because they are missing get this many replicas (3 on a
    # production cluster; with more than one, min.insync.replicas is one less, so acks=all
    # survives one broker down).
    topic_replication_factor: int = Field(default=1, ge=1, le=7)
    produce_timeout_seconds: float = Field(default=10.0, gt=0)
    # Each produce (a message's events) is one Kafka transaction, so consumers see all of it or
    # none (docs/topics.md). Off only to measure what that costs (make bench).
    kafka_transactions: bool = True
    # Transactional producers per process: how many produces run at once (each runs one
    # transaction at a time); created as needed.
    kafka_transactional_producers: int = Field(default=8, ge=1, le=64)
    # Their transactional.id prefix (ids are <prefix>-<n>). Empty: unique per process
    # (<client id>-<host>-<pid>). Give each replica a stable one (e.g. a StatefulSet's pod
    # name) so that a restarted replica aborts what its predecessor left open at once instead
    # of after the transaction timeout. Two running processes must never share one.
    kafka_transactional_id: str | None = None

    # --- state store -----------------------------------------------------------------------
    # SQLAlchemy URL; empty means the embedded SQLite file in the data dir.
    database_url: str | None = None

    # --- limits ----------------------------------------------------------------------------
    max_body_bytes: int = Field(default=15 * 1024 * 1024, ge=1024)
    max_items: int = Field(default=100_000, ge=1)
    # A body must arrive within this long (15 MB at 2 Mbit/s takes a minute): a client that
    # trickles bytes gets 408 instead of holding a connection and its buffer indefinitely.
    body_timeout_seconds: float = Field(default=120.0, gt=0)

    # --- validation ------------------------------------------------------------------------
    # Clinical dates older than this many days get a warning (BUS-003).
    reporting_window_days: int = Field(default=5 * 365, ge=1)
    # Graduated enforcement: rule id -> the date from which its errors reject items; before
    # that date they are reported as warnings. JSON, e.g. {"BUS-101": "2027-01-01"}.
    rule_enforcement: dict[str, date] = Field(default_factory=dict)
    # How often a running process reloads code lists imported with `intake codelists import`.
    codelist_refresh_seconds: float = Field(default=60.0, gt=0)
    # How often the gateway recomputes yesterday's coverage for its metrics (docs/coverage.md).
    coverage_refresh_seconds: float = Field(default=300.0, gt=0)

    # --- authentication --------------------------------------------------------------------
    # A real issuer (HelseID) is configured with issuer + JWKS; without one the dev issuer,
    # whose key pair lives in the data dir, signs and verifies tokens.
    auth_issuer: str | None = None
    auth_jwks_file: Path | None = None
    # Or the issuer's JWKS endpoint: cached, refreshed every `auth_jwks_refresh_seconds`, and at
    # once (at most every 30 s) when a token names a key id the cache does not have (rotation).
    auth_jwks_url: str | None = None
    auth_jwks_refresh_seconds: float = Field(default=300.0, gt=0)
    auth_audience: str = "register-intake"
    dev_issuer: str = "urn:register-intake:dev-issuer"
    token_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # Tokens bound with DPoP (RFC 9449): "Authorization: DPoP" plus a proof; Bearer is then
    # refused. Off: Bearer only. An endpoint never accepts both.
    auth_dpop: bool = False
    dpop_max_age_seconds: float = Field(default=60.0, gt=0, le=600)
    # The one allow-list of signature algorithms and RSA key sizes, for access tokens and DPoP
    # proofs (receiver/jose.py). Asymmetric algorithms only.
    jose_algorithms: list[str] = Field(default_factory=lambda: list(JOSE_ALGORITHMS), min_length=1)
    jose_rsa_min_bits: int = Field(default=2048, ge=2048)
    jose_rsa_max_bits: int = Field(default=4096, le=8192)
    # A readiness probe (event log, store write) slower than this is "slow"; two in a row make
    # the process not ready (wiring/readiness.py).
    readiness_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    # Requests per minute per reporting unit (and client) before 429.
    rate_limit_per_minute: int = Field(default=600, ge=1)

    # Embedded (SQLite) stores are brought to the newest schema at start-up; a shared production
    # database is migrated explicitly with `intake migrate`.
    auto_migrate: bool = True

    # --- review sign-in for quality staff (docs/review.md) ----------------------------------
    # OpenID Connect: authorization code + PKCE against this provider (HelseID in production),
    # the client authenticated by a private key (private_key_jwt, as HelseID requires) or a
    # secret. Without a provider, staff sign in by pasting an access token, outside production
    # only.
    review_oidc_issuer: str | None = None
    review_oidc_client_id: str | None = None
    review_oidc_client_key_file: Path | None = None  # a private JWK (RSA or EC), with "alg"
    review_oidc_client_secret: SecretStr | None = None
    review_oidc_scopes: str = "openid profile"
    # Where the provider sends the browser back; default <this server>/review/callback.
    review_oidc_redirect_uri: str | None = None
    # Signed-in people review only with this value in this claim (ID token or userinfo).
    review_oidc_role_claim: str = "roles"
    review_oidc_role: str = "intake-reviewer"
    review_oidc_name_claim: str = "name"
    # A session lasts this long from sign-in, then signs in again (the provider may not ask).
    review_session_minutes: int = Field(default=480, ge=5, le=24 * 60)

    # --- receipts feed and webhooks -----------------------------------------------------
    # Signs feed cursors; required in production (a development one is kept in the data dir).
    feed_secret: SecretStr | None = None
    # Long-polls of the feed wait at most this long (and never longer than the request asks).
    feed_max_wait_seconds: float = Field(default=30.0, gt=0, le=30)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_backoff_seconds: float = Field(default=2.0, gt=0)  # doubles per attempt, with jitter
    webhook_poll_seconds: float = Field(default=0.5, gt=0)

    # --- SLASH ("API Mottak" compatibility: GET /keys, POST /message) ----------------------
    # RSA keys that EPJ clients wrap each message's AES key with. By default they live in
    # <data dir>/slash-keys/ (shared by every gateway replica that shares the data dir) and
    # rotate: a new key every (lifetime - overlap) seconds, each valid for `lifetime` seconds,
    # so during the last `overlap` seconds of a key its successor is already published and
    # both decrypt.
    slash_key_lifetime_seconds: int = Field(default=90 * 86_400, ge=60)
    slash_key_overlap_seconds: int = Field(default=14 * 86_400, ge=1)
    slash_key_bits: Literal[2048, 3072, 4096] = 3072
    # Or one operator-managed private key (PEM, optionally encrypted); no rotation by us. It is
    # published until 00:00 UTC on `slash_key_expires`, which is then required.
    slash_key_file: Path | None = None
    slash_key_password: SecretStr | None = None
    slash_key_expires: date | None = None
    # What POST /message answers when some items fail validation (docs/slash.md). FHI's client
    # reads `delivered` and its rules drop a message answered 200, so by default such a message
    # is refused as a whole (400, 2008 for each error; nothing stored) and sent again corrected.
    # "deliver_valid": the valid items are stored and the answer is 200, delivered: true, with
    # each rejected item's errors listed, for vendors that read `errors` on success too.
    slash_rejected_items: Literal["refuse_message", "deliver_valid"] = "refuse_message"

    # --- identities (docs/privacy.md) -----------------------------------------------------
    # The identity keyset (vault encryption keys and the pseudonym key). Empty: the embedded one
    # in <data dir>/identity/keyset.json, created on first start, for development and tests;
    # production mounts one from a secret and never creates one.
    identity_keyset_file: Path | None = None
    # Off only to measure what pseudonymising and sealing cost (make bench): person numbers are
    # then stored as sent. Refused in production.
    identity_protection: bool = True

    # --- consumers -------------------------------------------------------------------------
    projector_batch_size: int = Field(default=500, ge=1)
    consumer_poll_seconds: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        unknown = sorted(set(self.jose_algorithms) - set(JOSE_ALGORITHMS))
        if unknown:
            raise ValueError(
                f"INTAKE_JOSE_ALGORITHMS: {unknown} not among {', '.join(JOSE_ALGORITHMS)}"
            )
        if self.jose_rsa_min_bits > self.jose_rsa_max_bits:
            raise ValueError("INTAKE_JOSE_RSA_MIN_BITS is above INTAKE_JOSE_RSA_MAX_BITS")
        if self.event_log == "kafka" and not self.kafka_bootstrap:
            raise ValueError("INTAKE_KAFKA_BOOTSTRAP is needed when INTAKE_EVENT_LOG=kafka")
        if self.auth_issuer and self.auth_jwks_file is None and self.auth_jwks_url is None:
            raise ValueError(
                "INTAKE_AUTH_JWKS_URL or INTAKE_AUTH_JWKS_FILE is required with INTAKE_AUTH_ISSUER"
            )
        if self.environment == "production" and self.auth_issuer is None:
            raise ValueError("production needs a real token issuer (INTAKE_AUTH_ISSUER)")
        if self.environment == "production" and (
            self.feed_secret is None or len(self.feed_secret.get_secret_value()) < 32
        ):
            raise ValueError("production needs INTAKE_FEED_SECRET of at least 32 characters")
        if self.review_oidc_issuer is not None:
            if not self.review_oidc_client_id:
                raise ValueError("INTAKE_REVIEW_OIDC_CLIENT_ID is needed with a sign-in provider")
            if (self.review_oidc_client_key_file is None) == (
                self.review_oidc_client_secret is None
            ):
                raise ValueError(
                    "the review sign-in needs one of INTAKE_REVIEW_OIDC_CLIENT_KEY_FILE"
                    " (private_key_jwt) or INTAKE_REVIEW_OIDC_CLIENT_SECRET"
                )
            if self.environment == "production" and not self.review_oidc_issuer.startswith(
                "https://"
            ):
                raise ValueError("INTAKE_REVIEW_OIDC_ISSUER must be https:// in production")
        if self.environment == "production" and not self.identity_protection:
            raise ValueError("INTAKE_IDENTITY_PROTECTION=false is for benchmarks, never production")
        if self.environment == "production" and self.identity_keyset_file is None:
            raise ValueError(
                "production needs INTAKE_IDENTITY_KEYSET_FILE (a keyset mounted from a secret;"
                " the embedded one in the data dir is for development)"
            )
        return self

    @property
    def resolved_identity_keyset(self) -> Path:
        return self.identity_keyset_file or self.data_dir / "identity" / "keyset.json"

    @property
    def allows_synthetic_identities(self) -> bool:
        """Synthetic test persons (month + 80) are accepted only outside production."""
        return self.environment != "production"

    @property
    def review_token_sign_in(self) -> bool:
        """Signing in to the review pages by pasting an access token: development only."""
        return self.environment != "production"

    @property
    def uses_dev_issuer(self) -> bool:
        return self.auth_issuer is None

    @property
    def issuer(self) -> str:
        return self.auth_issuer or self.dev_issuer

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'state.sqlite3').resolve()}"

    @property
    def embedded_log_path(self) -> Path:
        return self.data_dir / "eventlog.sqlite3"
