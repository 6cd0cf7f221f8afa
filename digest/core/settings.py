"""Settings: one typed object, loaded once at the edge.

Sources, lowest priority first: field defaults, the TOML file (``config/digest.toml``
or ``--config``/``DIGEST_CONFIG``), then ``DIGEST_*`` environment variables (nested
keys with ``__``, e.g. ``DIGEST_DIGESTS__DAILY__MAX_ARTICLES=5``). Every field has a
default and help text; ``tests/test_settings.py`` checks that each is documented in
``config/digest.toml``.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date, timedelta
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from digest.core.errors import ConfigError

DEFAULT_CONFIG = Path("config/digest.toml")
# Also the default of the readers themselves, for callers without settings.
IMPORT_MAX_BYTES = 50_000_000
# Public (it is in this file): the web app refuses to start with it.
DEFAULT_SECRET_KEY = "insecure-development-key"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: Any) -> timedelta:
    """Parse ``"90m"``, ``"24h"``, ``"7d"`` (or a number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    raise ValueError(f"not a duration: {value!r} (use e.g. '30m', '24h', '7d')")


def check_timezone(value: str) -> str:
    """Return ``value`` if it names an IANA timezone, else raise ValueError."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {value!r}") from None
    return value


def check_locale(value: str) -> str:
    """``value`` as a BCP 47 tag (``de``, ``pt-BR``) when Babel knows the locale, else ValueError.

    ``de_DE`` and ``de-de`` are accepted and written ``de-DE``.
    """
    from babel import Locale, UnknownLocaleError

    try:
        loc = Locale.parse(value.strip().replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        raise ValueError(f"unknown locale {value!r} (use a language tag such as de, fr or pt-BR)") from None
    return "-".join(p for p in (loc.language, loc.script, loc.territory) if p)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def check_smtp_url(url: str) -> str:
    """Return ``url`` if it is an ``smtp://`` or ``smtps://`` URL with a host (and a numeric port), else ValueError.

    The message never quotes the URL: it may carry a password.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("scheme must be smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError("port is not a number") from None
    return url


def _check_secret_smtp_url(value: SecretStr) -> SecretStr:
    check_smtp_url(value.get_secret_value())
    return value


class DigestConfig(BaseModel):
    """One digest (a ``[digests.NAME]`` table): what goes in it, when, and from whom."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field("The Daily Briefing", description="Name shown in the masthead and subject.")
    schedule: str = Field("0 7 * * *", description="Cron expression (minute hour day month weekday).")
    timezone: str = Field("UTC", description="IANA timezone of the schedule and of the edition date.")
    lookback: Duration = Field(timedelta(hours=24), description="Only articles published this recently.")
    max_articles: int = Field(20, ge=1, le=500, description="Most articles in one edition.")
    lead_ins: int = Field(
        3,
        ge=0,
        le=500,
        description="Stories that open with a bold lead-in (the top story, then the next in order): the "
        "editor's lead, else the summary's first sentence. 0 = none.",
    )
    sections: list[str] = Field(
        default_factory=list,
        description="Sections (article categories) in order; empty = every category, busiest first.",
    )
    language: str = Field(
        "en",
        description="BCP 47 language tag of the edition (the email's lang; a right-to-left language such as ur "
        "or ar also sets its direction), and the language of subscribers without a locale of their own. "
        "Each story carries its own language.",
    )
    template: str = Field("daily", description="Template name: templates/email/NAME.html and NAME.txt.")
    subject: str = Field(
        "{{ digest.title }}: {{ top_story.title if top_story else 'no new stories' }}",
        description="Jinja2 template of the Subject line (one line; newlines are stripped).",
    )
    from_addr: str | None = Field(None, description="From address; defaults to the global from_addr.")
    reply_to: str | None = Field(None, description="Reply-To address, if any.")
    list_id: str | None = Field(None, description="List-Id (RFC 2919); defaults to NAME.<sender domain>.")
    send_empty: bool = Field(False, description="Send an edition even when it has no new articles.")
    max_delay: Duration = Field(timedelta(hours=2), description="A missed run is still sent if at most this late.")
    weekly_lookback: Duration = Field(
        timedelta(days=7), description="Publication window of the editions for weekly subscribers."
    )

    _tz = field_validator("timezone")(classmethod(lambda cls, v: check_timezone(v)))


class ServiceSettings(BaseModel):
    """``[service]``: the long-running ``digest serve`` process."""

    model_config = ConfigDict(extra="forbid")

    tick: Duration = Field(
        timedelta(seconds=15),
        description="How often the scheduler re-checks due editions (local-time slots, catch-up) and due feeds.",
    )
    outbox_interval: Duration = Field(
        timedelta(seconds=5), description="How often every process looks for deliveries to send."
    )
    alerts_interval: Duration = Field(
        timedelta(minutes=1), description="How often the leader looks for breaking articles to send alerts for."
    )
    leader_interval: Duration = Field(
        timedelta(seconds=2), description="How often a process tries to take (or confirms it holds) the scheduler role."
    )
    leader_lock_id: int | None = Field(
        None,
        description="PostgreSQL advisory lock key of the scheduler role; unset = derived from database and schema.",
    )
    shutdown_timeout: Duration = Field(
        timedelta(seconds=30),
        description="On SIGTERM/SIGINT, how long the SMTP transaction in flight may take before the process exits.",
    )
    workers: int = Field(4, ge=2, le=64, description="Threads running the service's jobs.")
    log_format: str = Field("human", description="Log line format: human or json.")
    feed_every: Duration = Field(timedelta(minutes=15), description="Default polling interval of a new feed.")
    feed_timeout: float = Field(
        20.0,
        gt=0,
        description="Seconds one fetch (a feed poll or `articles import URL`) may take in all, redirects included.",
    )
    feed_max_bytes: int = Field(5_000_000, ge=1024, description="Largest feed response accepted, in bytes.")
    feed_max_redirects: int = Field(5, ge=0, le=20, description="Most redirects followed for one feed request.")
    feed_backoff_max: Duration = Field(
        timedelta(hours=6), description="Longest wait before retrying a failing feed (back-off doubles up to this)."
    )
    feed_user_agent: str = Field("digest/0.1 (feed poller)", description="User-Agent header of feed requests.")
    feed_allow_private: bool = Field(
        False,
        description="Let feeds and `articles import URL` fetch from loopback, private, link-local and other "
        "non-public addresses (off: such URLs and redirects to them are refused).",
    )

    @field_validator("log_format")
    @classmethod
    def _format(cls, v: str) -> str:
        if v.lower() not in {"human", "json"}:
            raise ValueError("must be human or json")
        return v.lower()


# The mailbox providers recipients are grouped by (digest.transport.providers); "other" is everyone else.
PROVIDERS = ("google", "yahoo", "microsoft", "apple", "other")


class ProviderLimits(BaseModel):
    """``[delivery.providers.NAME]``: how fast one mailbox provider is sent to (0 = no limit)."""

    model_config = ConfigDict(extra="forbid")

    connections: int = Field(
        0,
        ge=0,
        description="Most messages to this provider in flight at once, over all connections of a sender process "
        "(0 = only the server limits).",
    )
    max_per_connection: int = Field(
        0,
        ge=0,
        description="Reconnect after this many messages to this provider on one connection; counts only on "
        "connections to the provider's own servers (sending directly), not through a relay (0 = no limit).",
    )
    per_minute: int = Field(
        0,
        ge=0,
        description="Most messages a minute to this provider per sender process, evenly spaced (0 = no limit).",
    )
    deferral_pause: Duration = Field(
        timedelta(minutes=5),
        description="How long the provider rests after it defers for rate or reputation (Gmail 421 4.7.28, Yahoo "
        "[TSS04], Microsoft 451 4.7.5xx); its messages wait without counting an attempt, other providers go on.",
    )
    policy_pause: Duration = Field(
        timedelta(hours=1),
        description="How long the provider rests after a policy rejection (Microsoft 550 5.7.515, 5.7.26 DMARC, "
        "a block list): the message is retried later and counts as no bounce; logged once per pause.",
    )


# Published practice (docs/deliverability.md has the sources); a [delivery.providers.NAME]
# table overrides these key by key.
PROVIDER_DEFAULTS: dict[str, dict[str, Any]] = {
    "google": {"connections": 5, "max_per_connection": 50, "per_minute": 600, "deferral_pause": "10m"},
    "yahoo": {"connections": 10, "max_per_connection": 20, "deferral_pause": "2h"},
    "microsoft": {"connections": 5, "max_per_connection": 50, "deferral_pause": "30m"},
    "apple": {"connections": 10, "max_per_connection": 5, "deferral_pause": "15m"},
    "other": {},
}


def _provider_limits(value: Any) -> Any:
    """Every provider's limits: the built-in defaults, overridden key by key by the given tables."""
    if not isinstance(value, dict):
        return value
    unknown = sorted(set(value) - set(PROVIDERS))
    if unknown:
        raise ValueError(f"unknown provider {unknown[0]!r} (known: {', '.join(PROVIDERS)})")
    merged: dict[str, Any] = {}
    for name in PROVIDERS:
        given = value.get(name, {})
        if isinstance(given, ProviderLimits):
            given = given.model_dump(exclude_unset=True)
        merged[name] = {**PROVIDER_DEFAULTS[name], **given} if isinstance(given, dict) else given
    return merged


class WarmupSettings(BaseModel):
    """``[delivery.warmup]``: a daily cap on the mail of a new sending domain, growing day by day."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False,
        description="Cap how many messages (digest copies and alerts) are queued each day while a new sending "
        "domain warms up; the rest wait for a later day, the longest-subscribed first.",
    )
    start_date: date | None = Field(
        None,
        validate_default=True,
        description="Day 1 of the schedule (an ISO date, e.g. 2026-12-01): the day the domain started sending; "
        "required when enabled. Earlier days count as day 1.",
    )
    start: int = Field(200, ge=1, description="The cap on day 1: most messages queued that day.")
    days: int = Field(
        30, ge=1, le=365, description="Length of the schedule in days; from the day after its last day, no cap."
    )
    full: int = Field(
        0,
        ge=0,
        description="The cap on the last day; the caps in between grow by the same factor each day. "
        "0 = the number of active subscribers at the time of queueing.",
    )
    timezone: str = Field("UTC", description="IANA timezone whose midnight starts a new warm-up day.")

    _tz = field_validator("timezone")(classmethod(lambda cls, v: check_timezone(v)))

    @field_validator("start_date")
    @classmethod
    def _start_date_when_enabled(cls, value: date | None, info: ValidationInfo) -> date | None:
        if value is None and info.data.get("enabled"):
            raise ValueError(
                "required when delivery.warmup.enabled is true: the ISO date the sending domain started (e.g. "
                "start_date = 2026-12-01)"
            )
        return value


class DeliverySettings(BaseModel):
    """``[delivery]``: the delivery engine (SMTP pool, rate limits, workers)."""

    model_config = ConfigDict(extra="forbid")

    servers: list[Annotated[SecretStr, AfterValidator(_check_secret_smtp_url)]] = Field(
        default_factory=list,
        description="SMTP server URLs to spread sending over; empty = smtp_url alone. A URL may carry its own "
        "?connections=, ?rate=, ?hourly= and ?max_per_connection= overriding the keys below.",
    )
    connections: int = Field(
        32,
        ge=1,
        le=512,
        description="Persistent SMTP connections per server for one send (or serve drain), divided among its "
        "processes; fewer are used while the server turns connections away or throttles (AIMD).",
    )
    processes: int = Field(
        0, ge=0, le=64, description="Sender processes, each claiming from the outbox; 0 = one per CPU core."
    )
    send_while_starting: bool = Field(
        True,
        description="While the sender processes start (a second or two each), the process that starts them "
        "sends alone over all the connections, then hands over; false: only the sender processes send.",
    )
    rate_per_second: float = Field(0, ge=0, description="Most messages a second per server (0 = no limit).")
    rate_per_hour: int = Field(0, ge=0, description="Most messages an hour per server (0 = no limit).")
    max_per_connection: int = Field(
        0, ge=0, description="Reconnect after this many messages on one connection (0 = never by choice)."
    )
    throttle_pause: Duration = Field(
        timedelta(seconds=30),
        description="How long a server that throttles (454 4.7.0, 421 4.7.28, 451 4.7.1) rests before sending "
        "resumes with half its connections; the message waits without counting an attempt.",
    )
    breaker_failures: int = Field(
        3, ge=1, description="Consecutive connection failures after which a server is paused (circuit breaker)."
    )
    breaker_cooldown: Duration = Field(
        timedelta(seconds=60), description="How long a paused server rests before one message probes it."
    )
    retry_max_delay: Duration = Field(
        timedelta(hours=6), description="Longest back-off between two attempts of one delivery."
    )
    journal_dir: str = Field(
        "var/journal",
        description="Where each sender process notes every accepted message before recording it in the "
        "database; a restart on the same host reads it so a killed sender causes no duplicates.",
    )
    providers: Annotated[dict[str, ProviderLimits], BeforeValidator(_provider_limits)] = Field(
        default_factory=dict,
        validate_default=True,
        description="Limits per mailbox provider (google, yahoo, microsoft, apple, other), each a "
        "[delivery.providers.NAME] table overriding the built-in defaults key by key.",
    )
    warmup: WarmupSettings = Field(
        default_factory=WarmupSettings,
        description="The warm-up schedule of a new sending domain, a [delivery.warmup] table: a daily cap on the "
        "messages queued, growing from start to full over days.",
    )
    mx_lookup: bool = Field(
        True,
        description="Group a recipient domain that is not a well-known one by its MX hosts (a Google-hosted "
        "domain is google); off: such domains are other.",
    )
    mx_lookup_timeout: float = Field(
        2.0,
        gt=0,
        description="Seconds the MX lookups of one claimed batch may take in all; a domain whose lookup fails or "
        "is not done by then is other (for this batch: a late answer is cached for the next).",
    )


class WebSettings(BaseModel):
    """``[web]``: the subscriber web app."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Run the web app inside `digest serve`.")
    host: str = Field("127.0.0.1", description="Address the web app listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the web app listens on.")
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Proxies whose X-Forwarded-For/-Proto headers are trusted (comma-separated, or *).",
    )
    confirm_max_age: Duration = Field(timedelta(days=3), description="A confirmation link expires after this long.")
    subscribe_limit: int = Field(5, ge=1, description="Subscribe requests allowed per client address per window.")
    subscribe_window: Duration = Field(timedelta(hours=1), description="The window of subscribe_limit.")
    resend_interval: Duration = Field(
        timedelta(minutes=10), description="At most one confirmation email per address this often."
    )
    csrf_max_age: Duration = Field(timedelta(hours=2), description="A form must be sent back within this long.")
    link_protection: Duration = Field(
        timedelta(minutes=3),
        description="A confirm or unsubscribe button pressed this soon after its mail was sent is taken for "
        "a link scanner and asked again (the RFC 8058 one-click POST always acts).",
    )


class ApiSettings(BaseModel):
    """``[api]``: the REST API under ``/api/v1`` (keys: ``digest apikeys``)."""

    model_config = ConfigDict(extra="forbid")

    rate_per_minute: int = Field(
        120,
        ge=1,
        description="Requests one API key may make per minute (counted in the database, so shared by every "
        "web process); more get 429 with Retry-After.",
    )
    max_body_bytes: int = Field(
        10_000_000,
        ge=1024,
        description="Largest request body the API accepts, in bytes (a batch of 500 articles with their text).",
    )


class WebhooksSettings(BaseModel):
    """``[webhooks]``: events POSTed to the endpoints added with ``digest webhooks add``."""

    model_config = ConfigDict(extra="forbid")

    interval: Duration = Field(
        timedelta(seconds=5), description="How often every `digest serve` process POSTs the webhook events due."
    )
    timeout: float = Field(10.0, gt=0, description="Seconds one webhook POST may take in all (connect, send, answer).")
    retry_base: Duration = Field(
        timedelta(seconds=30), description="Wait before the first retry of a failed POST; it doubles each attempt."
    )
    retry_max: Duration = Field(timedelta(hours=1), description="Longest wait between two attempts of a POST.")
    disable_after: int = Field(
        20,
        ge=1,
        description="Failed POSTs in a row after which an endpoint is disabled (`digest webhooks enable ID` "
        "turns it back on; its queued events are kept).",
    )
    max_attempts: int = Field(
        50, ge=1, description="Attempts after which one event is dropped (logged), even if its endpoint works."
    )
    batch: int = Field(100, ge=1, description="Events claimed per pass of the webhook sender.")
    lease: Duration = Field(
        timedelta(minutes=2),
        description="How long a process holds the events it claimed; another process may POST them after that.",
    )


class MetricsSettings(BaseModel):
    """``[metrics]``: the Prometheus metrics."""

    model_config = ConfigDict(extra="forbid")

    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port on which `digest serve` serves its own /metrics (with the SMTP latency and breakers of "
        "its sender); unset = none (the web app's /metrics has the store's metrics).",
    )
    bind: str = Field("127.0.0.1", description="Address the metrics port of `digest serve` listens on.")


class DkimSettings(BaseModel):
    """``[dkim]``: DKIM signing of every message."""

    model_config = ConfigDict(extra="forbid")

    selector: str | None = Field(None, description="DKIM selector (the s= tag); unset = no signing.")
    domain: str | None = Field(None, description="Signing domain (the d= tag), usually the From domain.")
    private_key_file: str | None = Field(None, description="PEM file of the RSA private key.")
    ed25519_selector: str | None = Field(
        None,
        description="Selector of a second, Ed25519 key (RFC 8463); with ed25519_private_key_file every message "
        "is signed twice (ed25519-sha256 and rsa-sha256); unset = RSA only.",
    )
    ed25519_private_key_file: str | None = Field(
        None, description="PEM file of the Ed25519 private key (`digest dkim keygen --algorithm ed25519`)."
    )
    feedback_id: str | None = Field(
        None,
        description="A fixed Feedback-ID header for every message, e.g. 'daily:digest:example' (kept for "
        "configurations that set it); unset = DIGEST:EDITION:LIST-ID:feedback_sender_id per message.",
    )

    @field_validator("feedback_id")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\x21-\x7e]{1,200}", value):
            raise ValueError("must be printable ASCII without spaces")
        return value

    @model_validator(mode="after")
    def _all_or_nothing(self) -> DkimSettings:
        given = [self.selector, self.domain, self.private_key_file]
        if any(given) and not all(given):
            raise ValueError("selector, domain and private_key_file must be set together")
        if bool(self.ed25519_selector) != bool(self.ed25519_private_key_file):
            raise ValueError("ed25519_selector and ed25519_private_key_file must be set together")
        if self.ed25519_selector and not all(given):
            raise ValueError("Ed25519 signing comes in addition to RSA: set selector, domain and private_key_file too")
        if self.ed25519_selector and self.ed25519_selector == self.selector:
            raise ValueError("ed25519_selector must differ from selector (one DNS record per key)")
        return self

    @property
    def enabled(self) -> bool:
        """True when messages are to be signed."""
        return bool(self.selector and self.domain and self.private_key_file)


class Settings(BaseSettings):
    """Every setting of digest, with defaults and help text."""

    model_config = SettingsConfigDict(
        env_prefix="DIGEST_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    database_url: str = Field(
        "sqlite:///var/digest.db",
        description="SQLAlchemy URL of the store: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB.",
    )
    smtp_url: Annotated[SecretStr, AfterValidator(_check_secret_smtp_url)] = Field(
        SecretStr("smtp://127.0.0.1:25"),
        description="SMTP server: smtp://user:pass@host:port, smtps:// for TLS, ?starttls=true.",
    )
    smtp_timeout: float = Field(30.0, gt=0, description="Seconds before an SMTP operation times out.")
    secret_key: SecretStr = Field(
        SecretStr(DEFAULT_SECRET_KEY),
        description="Key that signs unsubscribe, confirmation and preference tokens and the web forms: a random "
        "value of at least 32 characters; the web app refuses to start with the default or a shorter one.",
    )
    base_url: str = Field("http://localhost:8000", description="Public URL of the web app (links).")
    from_addr: str = Field("Digest <digest@example.com>", description="Default From address.")
    postal_address: str = Field(
        "Example News, 1 Example Street, Springfield", description="Sender's postal address (footer)."
    )
    templates_dir: str | None = Field(None, description="Directory searched before the built-in templates.")
    mail_dir: str = Field("var/mail", description="Where the local SMTP sink and preview write .eml files.")
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")
    unsubscribe_address: str | None = Field(
        None, description="Address of the List-Unsubscribe mailto; default unsubscribe@<from domain>."
    )
    bounce_limit: int = Field(3, ge=1, description="Permanent failures after which a subscriber is bounced.")
    sunset_soft_bounces: int = Field(
        5,
        ge=0,
        description="Deliveries in a row deferred for a recipient (4xx at RCPT/DATA, not a server outage) after "
        "which the subscriber is no longer mailed (status bounced, event sunset); 0: off.",
    )
    verp: bool = Field(
        True,
        description="Send each copy from a signed per-subscriber return path (LOCAL+b-ID-SIG@domain of the From "
        "address) and believe only bounces that come back to one; off: a bounce must quote the Message-ID "
        "of a delivery we recorded.",
    )
    complaint_pause_rate: float = Field(
        0.001,
        ge=0,
        le=1,
        description="Complaints per message sent of one edition (0.001 = 0.1%) above which further sends of its "
        "digest are paused until `digest resume DIGEST`.",
    )
    complaint_min_sample: int = Field(
        1000, ge=1, description="Messages of an edition that must have been sent before its complaint rate counts."
    )
    feedback_sender_id: str | None = Field(
        None,
        description="Last field of the Feedback-ID header (digest:edition:list-id:SENDER), which Gmail's feedback "
        "loop reports complaint rates by; unset = the From address's domain.",
    )
    retry_base: Duration = Field(timedelta(minutes=5), description="First retry delay after a temporary failure.")
    retry_max_age: Duration = Field(
        timedelta(days=2), description="A delivery still failing temporarily after this long fails permanently."
    )
    lease: Duration = Field(timedelta(minutes=5), description="How long a worker holds claimed deliveries.")
    batch_size: int = Field(500, ge=1, description="Deliveries claimed and recorded per batch.")
    import_max_bytes: int = Field(
        IMPORT_MAX_BYTES,
        ge=1,
        description="Largest file, stdin or URL response `articles import` and `subscribers import` read, in bytes.",
    )
    alert_priority: int = Field(
        5,
        description="An article marked breaking with at least this priority is sent at once as an alert email to "
        "the subscribers who opted in to alerts.",
    )
    alerts_per_day: int = Field(
        3, ge=0, description="Most alerts one subscriber gets in one of their local days (0: no alerts at all)."
    )
    alert_max_age: Duration = Field(
        timedelta(hours=6),
        description="An alert not sent within this long after the article was published (the subscriber's quiet "
        "hours, the daily limit) is dropped: the next digest carries the story instead.",
    )
    alerts_digest: str | None = Field(
        None, description="The digest whose sender, List-Id and title alerts go out under; unset = the first digest."
    )
    service: ServiceSettings = Field(default_factory=ServiceSettings, description="The service (digest serve).")
    delivery: DeliverySettings = Field(default_factory=DeliverySettings, description="The delivery engine.")
    web: WebSettings = Field(default_factory=WebSettings, description="The subscriber web app.")
    dkim: DkimSettings = Field(default_factory=DkimSettings, description="DKIM signing.")
    api: ApiSettings = Field(default_factory=ApiSettings, description="The REST API.")
    webhooks: WebhooksSettings = Field(default_factory=WebhooksSettings, description="Webhooks out.")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="Prometheus metrics.")
    digests: dict[str, DigestConfig] = Field(
        default_factory=lambda: {"daily": DigestConfig()}, description="The digests, by name."
    )

    @field_validator("base_url")
    @classmethod
    def _absolute_base(cls, v: str) -> str:
        if not re.match(r"^https?://[^/]+", v):
            raise ValueError("must be an absolute http(s) URL")
        return v.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return v.upper()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Init kwargs carry the TOML file; the environment overrides it.
        return (env_settings, init_settings)

    def digest(self, name: str | None) -> tuple[str, DigestConfig]:
        """Return ``(name, config)`` of the named digest, or the only/first one."""
        from digest.core.errors import NotFoundError

        if name is None:
            name = next(iter(self.digests))
        try:
            return name, self.digests[name]
        except KeyError:
            known = ", ".join(self.digests) or "none"
            raise NotFoundError(f"no digest named {name!r} (configured: {known})") from None


def env_name(key: str) -> str:
    """The environment variable of a setting: ``web.port`` -> ``DIGEST_WEB__PORT``."""
    return "DIGEST_" + key.replace(".", "__").upper()


def setting_source(key: str, path: str | Path | None = None) -> str:
    """Where a setting was given, for messages: its environment variable if set, else the settings file."""
    parts = key.split(".")
    # The variable may name the whole table the setting is in (DIGEST_DIGESTS as JSON).
    for n in range(len(parts), 0, -1):
        if (variable := env_name(".".join(parts[:n]))) in os.environ:
            return f"environment {variable}"
    return f"{config_path(path)} or environment {env_name(key)}"


def config_path(path: str | Path | None = None) -> Path:
    """The settings file: ``path``, else ``DIGEST_CONFIG``, else ``config/digest.toml``."""
    explicit = path or os.environ.get("DIGEST_CONFIG")
    return Path(explicit) if explicit else DEFAULT_CONFIG


def load_settings(path: str | Path | None = None) -> Settings:
    """Load settings from the TOML file at ``path`` (or ``DIGEST_CONFIG``) and the environment.

    A missing default file is fine (defaults apply); a missing explicit file, a TOML
    syntax error or an invalid value raises :class:`ConfigError` naming key and file.
    """
    env = os.environ
    explicit = path or env.get("DIGEST_CONFIG")
    cfg_path = config_path(path)
    data: dict[str, Any] = {}
    if cfg_path.exists():
        try:
            with cfg_path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("(syntax)", str(exc), str(cfg_path)) from None
    elif explicit:
        raise ConfigError("config", f"file not found: {cfg_path}", str(cfg_path))
    try:
        return Settings(**data)
    except SettingsError as exc:
        # A complex field (e.g. DIGEST_DIGESTS) given as malformed JSON in the environment.
        m = re.search(r'field "(\w+)"', str(exc))
        field_name = m.group(1) if m else "?"
        raise ConfigError(field_name, "not valid JSON", f"environment DIGEST_{field_name.upper()}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        # The variable may name the whole table or list the value is in (DIGEST_DELIVERY__SERVERS).
        given = [env_name(".".join(str(p) for p in err["loc"][:n])) for n in range(len(err["loc"]), 0, -1)]
        env_key = next((name for name in given if name in env), None)
        source = f"environment {env_key}" if env_key else str(cfg_path)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = unknown_key_message(err["loc"])
        # Never echo the offending input: it may be a secret.
        raise ConfigError(key, msg, source) from None


def unknown_key_message(loc: tuple[int | str, ...]) -> str:
    """The message of an unknown key: with the closest known key of its table, if any (``smtpurl`` -> smtp_url)."""
    model: Any = Settings
    parts = [str(p) for p in loc[:-1]]
    while parts and model is not None:
        field = model.model_fields.get(parts.pop(0))
        annotation = field.annotation if field is not None else None
        args = get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif args and isinstance(args[-1], type) and issubclass(args[-1], BaseModel):
            model = args[-1]  # dict[str, DigestConfig]: the next part is a name
            parts = parts[1:]
        else:
            model = None
    known = list(model.model_fields) if model is not None else []
    close = get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f"unknown setting; did you mean {close[0]}?" if close else "unknown setting"
