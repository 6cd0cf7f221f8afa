"""Logs: one line per event, human-readable or JSON, with secrets and addresses masked.

Library code logs events with :func:`event` (a name and key=value fields); any other
log record is shown the same way. Every line passes through :class:`Redactor`: known
secret values and URL passwords are always masked, and e-mail addresses are
shortened to ``a***@example.org`` in records at INFO and above (full addresses
appear only at DEBUG, for someone tracing one delivery).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from digest.core.text import mask_email

FORMATS = ("human", "json")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)[^@\s/]+@")
_BARE = re.compile(r"^[\w.:/@+\-]+$")


def mask_emails(text: str) -> str:
    """Every address in ``text`` masked by :func:`~digest.core.text.mask_email` (``a***@example.org``)."""
    return _EMAIL.sub(lambda m: mask_email(m.group(0)), text)


def find_emails(text: str) -> list[str]:
    """The e-mail addresses in ``text`` (the same pattern :func:`mask_emails` masks)."""
    return _EMAIL.findall(text)


def mask_url(text: str) -> str:
    """``https://user:pw@host/feed`` -> ``https://user:***@host/feed`` wherever a URL with a password appears."""
    return _URL_PASSWORD.sub(r"\1***@", text)


class Redactor:
    """Masks secrets (always) and e-mail addresses (at INFO and above) in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Short values would mask innocent text ("25" in a port); real secrets are longer.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str, levelno: int) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = mask_url(text)
        if levelno >= logging.INFO:
            text = mask_emails(text)
        return text


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log the event ``name`` (e.g. ``edition.sent``) with ``fields`` as one line."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"event": name, "fields": fields})


def _value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return str(v)


def _one_line(text: str) -> str:
    return text.replace("\r", "").replace("\n", " | ")


class _Base(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor

    @staticmethod
    def _timestamp(record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC)
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"

    @staticmethod
    def _exception(record: logging.LogRecord) -> str | None:
        if not record.exc_info or record.exc_info[0] is None:
            return None
        if record.levelno >= logging.ERROR or logging.getLogger().isEnabledFor(logging.DEBUG):
            return "".join(traceback.format_exception(*record.exc_info)).rstrip()
        exc = record.exc_info[1]
        return f"{type(exc).__name__}: {exc}"


class HumanFormatter(_Base):
    """``2026-11-25T07:00:00.012Z INFO  digest.service.runner edition.sent digest=daily sent=3``."""

    def format(self, record: logging.LogRecord) -> str:
        name = getattr(record, "event", None)
        fields: dict[str, Any] = getattr(record, "fields", None) or {}
        parts = [self._timestamp(record), f"{record.levelname:<5}", record.name]
        parts.append(name if name else record.getMessage())
        for k, v in fields.items():
            text = "" if v is None else str(_value(v))
            parts.append(f"{k}={text if _BARE.match(text) else json.dumps(text, ensure_ascii=False)}")
        exc = self._exception(record)
        if exc:
            parts.append(f"error={json.dumps(exc, ensure_ascii=False)}")
        return self.redact(_one_line(" ".join(parts)), record.levelno)


class JsonFormatter(_Base):
    """One JSON object per line: ts, level, logger, event, message, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        name = getattr(record, "event", None)
        fields: dict[str, Any] = getattr(record, "fields", None) or {}
        obj: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "event": name or "log",
        }
        if not name:
            obj["message"] = record.getMessage()
        for k, v in fields.items():
            obj.setdefault(k, _value(v))
        exc = self._exception(record)
        if exc:
            obj["error"] = exc
        return self.redact(json.dumps(obj, ensure_ascii=False, default=str), record.levelno)


@dataclass(frozen=True)
class LogConfig:
    """How this process logs: what a worker process needs to log exactly like its parent."""

    level: str = "INFO"
    fmt: str = "human"
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def apply(self, stream: TextIO | None = None) -> logging.Handler:
        """Configure this process's logging (see :func:`setup_logging`)."""
        return setup_logging(self.level, self.fmt, self.secrets, stream)


# Set by setup_logging: a worker process started later is configured the same way.
_current: LogConfig | None = None


def current_config(settings: Any) -> LogConfig:
    """The configuration of the last :func:`setup_logging` of this process.

    Without one (a library caller that configured nothing), the configured level and
    format of ``settings``, with its secrets masked.
    """
    if _current is not None:
        return _current
    return LogConfig(settings.log_level, settings.service.log_format, tuple(secret_values(settings)))


def setup_logging(
    level: str = "INFO", fmt: str = "human", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) as one human or JSON line per event."""
    global _current
    if fmt not in FORMATS:
        from digest.core.errors import InputError

        raise InputError("--log-format", f"must be human or json, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    secrets = tuple(secrets)
    redactor = Redactor(secrets)
    handler.setFormatter(JsonFormatter(redactor) if fmt == "json" else HumanFormatter(redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Library chatter that is not ours stays at WARNING unless we debug.
    quiet = logging.WARNING if level.upper() != "DEBUG" else logging.DEBUG
    for noisy in ("apscheduler", "httpx", "httpcore", "mail.log", "alembic"):
        logging.getLogger(noisy).setLevel(max(quiet, logging.getLogger().level))
    _current = LogConfig(level.upper(), fmt, secrets)
    return handler


def secret_values(settings: Any) -> list[str]:
    """The secret strings of ``settings`` that must never appear in a log line."""
    from urllib.parse import urlsplit

    values = [settings.secret_key.get_secret_value()]
    for url in (settings.smtp_url.get_secret_value(), settings.database_url):
        try:
            pw = urlsplit(url).password
        except ValueError:
            pw = None
        if pw:
            values.append(pw)
    return values
