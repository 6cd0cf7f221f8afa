"""SMTP connections made from settings: the one place ``smtp_url`` and ``smtp_timeout`` are read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from digest.core.errors import ConfigError
from digest.core.settings import Settings
from digest.transport.pool import configured_servers
from digest.transport.sink import SmtpSink
from digest.transport.smtp import parse_smtp_url, smtp_from_settings

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


def settings_for(smtp_url: str, **kw: object) -> Settings:
    return Settings(smtp_url=smtp_url, smtp_timeout=7.5, **kw)  # type: ignore[arg-type]


def test_connection_from_settings_delivers_to_smtp_url_with_its_timeout(sink: SmtpSink) -> None:
    with smtp_from_settings(settings_for(sink.url)) as smtp:
        answer = smtp.send("a@example.org", "b@example.org", MESSAGE)
        timeout = smtp.config.timeout

    assert answer.startswith("250") and timeout == 7.5
    assert [m.rcpt_tos for m in sink.messages] == [["b@example.org"]]


def test_settings_refuse_a_url_that_is_not_smtp() -> None:
    # Checked when the settings load, so the message names the file or DIGEST_SMTP_URL.
    with pytest.raises(ValidationError) as caught:
        settings_for("http://mail.example.com")

    assert caught.value.errors()[0]["loc"] == ("smtp_url",)


def test_a_connection_refuses_a_url_that_is_not_smtp() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_smtp_url("http://mail.example.com")

    assert caught.value.key == "smtp_url"


def test_pool_servers_take_the_same_timeout() -> None:
    urls = ["smtp://a.example.com:2525", "smtps://b.example.com"]
    settings = settings_for("smtp://unused.example.com", delivery={"servers": urls})

    servers = configured_servers(settings)

    assert [(s.name, s.config and s.config.timeout) for s in servers] == [
        ("a.example.com:2525", 7.5),
        ("b.example.com:465", 7.5),
    ]


def test_a_server_that_is_a_providers_own_mx_takes_its_messages_per_connection() -> None:
    urls = ["smtp://gmail-smtp-in.l.google.com", "smtp://mx-aol.mail.gm0.yahoodns.net?max_per_connection=7"]
    settings = settings_for("smtp://relay.example.com", delivery={"servers": urls})

    limits = [s.max_per_connection for s in configured_servers(settings)]
    relay = configured_servers(settings_for("smtp://relay.example.com"))[0].max_per_connection

    assert (limits, relay) == ([50, 7], 0)
