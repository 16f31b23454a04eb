"""Typed settings: config/*.toml, then KPAY_<SECTION>__<KEY> environment overrides.

The core sections are declared here; every other section belongs to a plugin, which
declares its model through the ``register_settings`` hook. An unknown section or key
stops start-up with a message that names it.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kpay.core.errors import ConfigError

ENV_PREFIX = "KPAY_"
# Where the generated dev secret and other local state live (not a setting: it is
# needed before the settings are read, and tests point it at a temporary folder).
VAR_DIR_ENV = "KPAY_VAR_DIR"
MIN_SECRET_LENGTH = 32
# One source of a CSP img-src/media-src list: 'self', 'none', a scheme ("https:"), or a
# host with an optional scheme, "*." wildcard, port and path. Nothing that could end the
# directive (";", ",", blanks) or add a keyword such as 'unsafe-inline'.
CSP_MEDIA_SOURCE = re.compile(
    r"'self'|'none'|[a-z][a-z0-9+.-]*:"
    r"|([a-z][a-z0-9+.-]*://)?(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:(\d{1,5}|\*))?(/[^\s;,']*)?",
    re.IGNORECASE)


def var_dir() -> str:
    return os.environ.get(VAR_DIR_ENV, "var")


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8888, ge=0, le=65535)
    # Origins allowed to open /ws from a browser, besides the server's own host.
    allowed_origins: list[str] = []
    max_body_bytes: int = Field(1_048_576, gt=0)
    # Bodies over max_body_bytes, up to this size, are read and thrown away so the client
    # gets a 413 error envelope; a larger one gets the connection closed without reading it.
    max_discard_bytes: int = Field(64 * 1_048_576, gt=0)
    # Public base URL, used for links handed to WeChat (notify, OAuth redirect).
    public_url: str = ""
    static_path: str = "static"
    # This node's name among the nodes of one deployment; keep it stable across restarts.
    # Empty: "<hostname>:<the port it listens on>" (with port 0, a random name per start).
    node_id: str = Field("", max_length=200)
    # Where the pages may load images and audio/video from (the img-src and media-src of
    # their Content-Security-Policy): rooms and lessons show media hosted elsewhere.
    media_origins: list[str] = ["'self'", "https:"]
    # The reverse proxies in front of this server (IP addresses or CIDR networks). Only a
    # request whose socket peer is one of them may name the client with X-Forwarded-For
    # (the right-most address that is not itself a trusted proxy) or X-Real-IP, and the
    # scheme with X-Forwarded-Proto; anyone else's are ignored and the client IP is the
    # socket peer. Empty: no proxy trusted. nginx on the same host: ["127.0.0.1/32"].
    trusted_proxies: list[str] = []
    # A connection waiting this long for a request is closed: an idle keep-alive
    # connection, or a request whose line and headers have not all arrived (Tornado
    # times the whole request head from when it starts waiting: the header timeout).
    idle_connection_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    # A request body that has not fully arrived this long after its headers: closed.
    body_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    # Most connections open at once on this node, HTTP and WebSocket together; one
    # accepted beyond it is closed at once. Keep the process's file limit above it.
    max_connections: int = Field(10_000, ge=1)
    # Processes serving this node's port (docs/operations.md, "Workers"): a number, or
    # "auto" for one per core. More than one needs [realtime] broker = "redis".
    workers: int | str = 1
    # A stopping process (SIGTERM, a graceful restart) stops accepting, then waits this
    # long for the requests and jobs under way (money work among them) to finish.
    shutdown_timeout_seconds: float = Field(20.0, ge=0, le=600)
    # The deployment's time zone (IANA name): where a month begins and ends for the
    # consultants' monthly statements (docs/money.md, "Statements").
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as "
                             "Asia/Shanghai)") from None
        return value

    @field_validator("workers", mode="before")  # before pydantic turns true into 1
    @classmethod
    def worker_count(cls, value: Any) -> int | str:
        if value == "auto" or (type(value) is int and 1 <= value <= 256):
            return value
        raise ValueError('a number from 1 to 256, or "auto"')

    @field_validator("trusted_proxies")
    @classmethod
    def ip_networks(cls, proxies: list[str]) -> list[str]:
        import ipaddress

        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy.strip(), strict=True)
            except ValueError:
                raise ValueError(
                    f"{proxy!r} is not an IP address or network such as 127.0.0.1/32 or "
                    "10.0.0.0/8 (no host bits set after the prefix)") from None
        return proxies

    @field_validator("media_origins")
    @classmethod
    def csp_sources(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not CSP_MEDIA_SOURCE.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not a CSP source: use 'self', a scheme such as https:, "
                    "or an origin such as https://media.example.com or https://*.example.com")
        return origins


class MongoSettings(Section):
    # Empty: start the embedded SecantusDB development server.
    uri: str = ""
    database: str = "kpay"
    embedded_path: str = "var/db"
    embedded_command: str = "secantusd-py"


class AuthSettings(Section):
    # Empty in dev mode: a secret is generated into var/jwt_secret. Required otherwise.
    secret: str = ""
    audience: str = "kpay"
    token_ttl_seconds: int = Field(7 * 24 * 3600, gt=0)
    # How old a process's copy of a user's role, block and revoked tokens may be: a
    # change made elsewhere (another node, the CLI) takes effect within this many seconds.
    standing_cache_seconds: float = Field(5.0, ge=0, le=300)

    @field_validator("secret")
    @classmethod
    def long_enough(cls, secret: str) -> str:
        if secret and len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
        return secret


class DevSettings(Section):
    enabled: bool = False


class PluginSettings(Section):
    # Names of the kpay.plugins entry points to load; ["*"] loads every installed one.
    enabled: list[str] = ["*"]


class RealtimeSettings(Section):
    # Per channel: how many past events are kept for resume (0: none) and for how
    # long (seconds; 0: no age limit, only the size).
    history_size: int = Field(1000, ge=0)
    history_ttl_seconds: int = Field(3600, ge=0)
    # Memory broker: the history of all channels together is kept under about this many
    # bytes (the oldest events of any channel go first); channels with no event and no
    # subscriber for history_ttl_seconds are dropped.
    history_total_bytes: int = Field(64 * 1024 * 1024, gt=0)
    auth_timeout_seconds: float = Field(10.0, gt=0)
    max_frame_bytes: int = Field(65_536, gt=0)
    rate_per_second: float = Field(20.0, gt=0)
    rate_burst: int = Field(40, gt=0)
    # Violations past the burst after which the socket is closed with 4429.
    rate_violations_before_close: int = Field(20, gt=0)
    # Sockets one user may have open (on all nodes together with the redis broker);
    # the one beyond it is closed with 4429 "too_many_sockets" right after it
    # authenticates. 0: no cap.
    max_sockets_per_user: int = Field(20, ge=0)
    outbound_buffer_bytes: int = Field(1_048_576, gt=0)
    ping_interval_seconds: float = Field(25.0, ge=0)
    # No pong within this many seconds after a ping: the socket is closed. Tornado
    # caps it at the ping interval.
    ping_timeout_seconds: float = Field(20.0, ge=0)
    broker: str = Field("memory", pattern="^(memory|redis)$")
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix of every Redis key and pub/sub channel kpay uses: nodes of one
    # deployment share it, two deployments on one Redis must not.
    redis_prefix: str = "kpay:"
    # Redis broker: a node that stops without cleaning up drops out of presence after
    # this many seconds (its heartbeat runs every third of it).
    presence_ttl_seconds: float = Field(15.0, ge=1.0, le=3600.0)


class SchedulerSettings(Section):
    enabled: bool = True


class MoneySettings(Section):
    # Every amount is integer fen (CNY); there is no currency setting.
    topup_min: int = Field(1, gt=0)
    topup_max: int = Field(500_000, gt=0)
    # Platform share of consultant revenue, in basis points (1/100 of a percent).
    platform_fee_bps: int = Field(2000, ge=0, le=10_000)
    order_expiry_seconds: int = Field(1800, ge=300)
    # A paid order whose fulfilment keeps failing is retried with back-off (1, 2, 4 ...
    # minutes, at most an hour apart), then refunded to the wallet after this many tries.
    fulfil_max_attempts: int = Field(8, ge=1, le=100)
    # Unpaid (pending, not yet expired) orders one user may have at once; creating
    # another is 409 too_many_open (wallet and free orders are paid at once and never
    # count). Each may have started a payment with WeChat Pay. 0: no cap.
    max_pending_orders_per_user: int = Field(20, ge=0)


class PayoutSettings(Section):
    """Withdrawals of earnings (docs/money.md, "Payouts"). Amounts are integer fen."""

    # Earned money becomes withdrawable this many days after the ledger entry that
    # credited it (a refund's debit counts at once).
    hold_days: int = Field(7, ge=0, le=90)
    # WeChat's 商家转账 pays at least 0.1 yuan.
    min_amount: int = Field(10, ge=1)
    # Most one consultant may withdraw per Beijing day (failed, expired and cancelled
    # payouts do not count).
    max_per_day: int = Field(2_000_000, ge=1)
    # A payout above this waits for an admin's approval; unset: none waits.
    approval_above: int | None = Field(None, ge=0)
    # A transfer the consultant has not confirmed is cancelled (and its money returned)
    # this long after it was sent; WeChat's own limit is 24 hours.
    expiry_hours: int = Field(24, ge=1, le=24 * 30)


class LimitSettings(Section):
    """Token-bucket limits on HTTP requests, kept in memory per process
    (kpay/core/ratelimit.py): a bucket per user (per client IP on the login routes and
    routes without auth) and class of route. A request finding its bucket empty gets
    429 rate_limited with Retry-After."""

    enabled: bool = True
    # GET (and HEAD, OPTIONS) requests.
    read_per_second: float = Field(10.0, gt=0)
    read_burst: int = Field(60, ge=1)
    # POST, PUT, PATCH, DELETE requests.
    write_per_second: float = Field(2.0, gt=0)
    write_burst: int = Field(30, ge=1)
    # Login routes without auth (/api/v1/dev/login, /api/v1/wechat/oauth/*), per IP.
    login_per_second: float = Field(0.5, gt=0)
    login_burst: int = Field(20, ge=1)
    # POST /api/v1/orders (each may call WeChat Pay).
    orders_per_second: float = Field(0.2, gt=0)
    orders_burst: int = Field(10, ge=1)
    # Most buckets kept per process; past it the least recently used one is dropped.
    max_keys: int = Field(100_000, ge=1)


MIB = 1_048_576


class MediaSettings(Section):
    """Uploaded images, audio and video (docs/media.md). Sizes in bytes."""

    # Where files are kept: "local" (a folder on this node) or "s3" (any S3-compatible
    # store: AWS S3, Tencent COS, Aliyun OSS, MinIO).
    storage: str = Field("local", pattern="^(local|s3)$")
    # Local storage and the staging of uploads in progress; empty: <var>/media.
    path: str = ""
    # The most one upload may be, by kind (checked against the declared size at the
    # start and against every chunk).
    max_image_bytes: int = Field(10 * MIB, gt=0)
    max_audio_bytes: int = Field(50 * MIB, gt=0)
    max_video_bytes: int = Field(500 * MIB, gt=0)
    # The size of each chunk of an upload (the last may be shorter); a chunk's body may
    # be this large whatever [server] max_body_bytes says.
    chunk_bytes: int = Field(MIB, ge=64 * 1024, le=16 * MIB)
    # An upload not finished this long after it started is dropped with its chunks.
    upload_ttl_hours: int = Field(24, ge=1, le=24 * 7)
    # Upload starts per user per hour, and uploads one user may have open at once.
    uploads_per_hour: int = Field(60, ge=1)
    max_open_uploads: int = Field(10, ge=1)
    # Chunks refused (wrong offset, bad range) before the upload is given up.
    max_refused_chunks: int = Field(50, ge=1)
    # Storage each user may fill, by role (a consultant's or admin's covers, lessons).
    quota_student_bytes: int = Field(200 * MIB, ge=0)
    quota_consultant_bytes: int = Field(5 * 1024 * MIB, ge=0)
    # Images larger than this many pixels are refused before they are decoded.
    max_image_pixels: int = Field(40_000_000, ge=1_000_000, le=200_000_000)
    # How long a signed URL of paid media works unless the plugin asks otherwise.
    signed_url_ttl_seconds: int = Field(600, ge=10, le=24 * 3600)
    # Cache-Control max-age of public images (covers, avatars). A takedown cannot reach
    # copies already cached by browsers or a CDN for this long.
    public_cache_seconds: int = Field(86_400, ge=0, le=365 * 86_400)
    # S3-compatible storage ([media] storage = "s3"); keys may come from the env as
    # KPAY_MEDIA__S3_ACCESS_KEY and KPAY_MEDIA__S3_SECRET_KEY.
    s3_endpoint_url: str = ""
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    # Key prefix of every object kpay stores in the bucket.
    s3_prefix: str = Field("kpay/", max_length=200)
    # How long a presigned S3 URL kpay redirects to stays valid (S3 judges it on its
    # own, real, clock).
    s3_presign_seconds: int = Field(300, ge=10, le=3600)


class LoggingSettings(Section):
    level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")


class StorefrontSettings(Section):
    """What the home page sells by (kpay/core/search.py): the categories authors pick
    for their rooms, courses and consultant profiles, in the order pages show them."""

    categories: list[str] = Field(
        default_factory=lambda: ["职场", "心理", "亲子", "财经", "健康", "语言", "技术", "其他"],
        max_length=30)

    @field_validator("categories")
    @classmethod
    def short_and_distinct(cls, value: list[str]) -> list[str]:
        if any(not 1 <= len(name) <= 8 for name in value) or len(set(value)) != len(value):
            raise ValueError("categories must be distinct names of 1 to 8 characters")
        return value


class AudienceSettings(Section):
    """Messages to segments (docs/audience.md): a consultant's caps (operators are
    bounded by a segment's size only)."""

    # Messages one consultant may send per local day ([server] timezone).
    messages_per_day: int = Field(3, ge=1, le=100)
    # Members one consultant's message may reach.
    max_recipients: int = Field(2000, ge=1, le=10_000)


CORE_SECTIONS: dict[str, type[Section]] = {
    "server": ServerSettings,
    "mongodb": MongoSettings,
    "auth": AuthSettings,
    "dev": DevSettings,
    "plugins": PluginSettings,
    "realtime": RealtimeSettings,
    "scheduler": SchedulerSettings,
    "money": MoneySettings,
    "payouts": PayoutSettings,
    "storefront": StorefrontSettings,
    "limits": LimitSettings,
    "logging": LoggingSettings,
    "media": MediaSettings,
    "audience": AudienceSettings,
}


class Settings:
    """All sections, validated. Core sections are attributes; plugin sections by name."""

    def __init__(self, sections: Mapping[str, BaseModel], source: str = "") -> None:
        self._sections = dict(sections)
        self.source = source

    server: ServerSettings
    mongodb: MongoSettings
    auth: AuthSettings
    dev: DevSettings
    plugins: PluginSettings
    realtime: RealtimeSettings
    scheduler: SchedulerSettings
    money: MoneySettings
    payouts: PayoutSettings
    storefront: StorefrontSettings
    limits: LimitSettings
    logging: LoggingSettings
    media: MediaSettings
    audience: AudienceSettings

    def __getattr__(self, name: str) -> Any:
        try:
            return self._sections[name]
        except KeyError:
            raise AttributeError(name) from None

    def section(self, name: str) -> Any:
        return self._sections[name]

    def replace(self, section: str, **changes: Any) -> Settings:
        """A copy with some keys of one section changed (used by tests and the CLI)."""
        sections = dict(self._sections)
        sections[section] = sections[section].model_copy(update=changes)
        return Settings(sections, self.source)


def read_raw(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Read a TOML file into {section: {key: value}} (no file: empty)."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    for name, value in raw.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: top-level key {name!r} must be a [section]")
    return raw


def apply_env(raw: dict[str, dict[str, Any]], environ: Mapping[str, str]) -> None:
    """Apply KPAY_<SECTION>__<KEY>=value overrides in place.

    A value starting with ``[`` or ``{`` is read as JSON (lists, tables); any other value
    stays a string, which the section's model converts to its field's type ("8080" to
    an int, "true"/"false" to a bool), so a string field never receives a number.
    """
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        if not section or not key:
            continue
        parsed: Any = value
        if value.lstrip().startswith(("[", "{")):
            try:
                parsed = json.loads(value)
            except ValueError as e:
                raise ConfigError(f"{name}: not valid JSON: {e}") from None
        raw.setdefault(section.lower(), {})[key.lower()] = parsed


def validate(
    raw: Mapping[str, Mapping[str, Any]],
    plugin_sections: Mapping[str, type[BaseModel]] | None = None,
    source: str = "",
) -> Settings:
    """Validate every section; raise ConfigError naming the section and key at fault."""
    models: dict[str, type[BaseModel]] = {**CORE_SECTIONS, **(plugin_sections or {})}
    unknown = sorted(set(raw) - set(models))
    if unknown:
        raise ConfigError(
            f"{source or 'config'}: unknown section [{unknown[0]}]; known sections: "
            + ", ".join(sorted(models))
            + " (a plugin's section is known only when the plugin is enabled)"
        )
    sections: dict[str, BaseModel] = {}
    for name, model in models.items():
        try:
            sections[name] = model.model_validate(dict(raw.get(name, {})))
        except ValidationError as e:
            first = e.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "?"
            raise ConfigError(
                f"{source or 'config'}: [{name}] {key}: {first['msg']}"
                + (" (unknown key)" if first["type"] == "extra_forbidden" else "")
            ) from None
    settings = Settings(sections, source)
    check_consistency(settings, source)
    return settings


def check_consistency(settings: Settings, source: str = "") -> None:
    """Rules that span sections."""
    if not settings.dev.enabled and not settings.auth.secret:
        raise ConfigError(
            f"{source or 'config'}: [auth] secret: required when dev mode is off "
            "(set it with KPAY_AUTH__SECRET, at least 32 random characters)"
        )


def gather(
    path: str | Path | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The raw sections: the file, then env overrides, then explicit overrides (tests, CLI)."""
    raw = read_raw(path)
    apply_env(raw, os.environ if environ is None else environ)
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    return raw


def enabled_plugin_names(raw: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The plugin selection, read before the plugins (and so their sections) are known."""
    try:
        return PluginSettings.model_validate(dict(raw.get("plugins", {}))).enabled
    except ValidationError as e:
        raise ConfigError(f"[plugins] {e.errors()[0]['msg']}") from None
