"""The message stage: MIME structure, headers, per-recipient fill, a golden email."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from digest.compose.message import PreparedMessage, Recipient, message_id
from digest.compose.recipients import test_recipient as trial_recipient
from digest.compose.variants import make_variants
from digest.core.settings import DigestConfig, Settings
from digest.edition.select import select_articles
from tests.edition.test_select import art

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "daily.eml"


def settings(**digest: object) -> Settings:
    return Settings(
        secret_key="golden-secret",  # type: ignore[arg-type]
        base_url="https://news.example.com",
        from_addr="The Briefing <briefing@news.example.com>",
        postal_address="Example News, 1 Harbour Road, Springfield",
        digests={"daily": DigestConfig(title="The Briefing", sections=["World", "Science"], **digest)},  # type: ignore[arg-type]
    )


def prepared(titles: list[str] | None = None, **digest: object) -> PreparedMessage:
    s = settings(**digest)
    arts = [
        art(
            1,
            "Harbour cities agree storm warning pact",
            20,
            breaking=True,
            source="Harbour Times",
            summary="Twelve ports will share tide gauges and sirens. The pact starts in March.",
            lead="Why it matters: one warning for the whole coast.",
        ),
        art(
            2,
            "Volunteers map new asteroids",
            60,
            category="Science",
            source="Lab Notes",
            summary="Dr. Mei Chen's team of 400 volunteers logged 31 new objects. None is a threat.",
        ),
        art(3, "Rail tunnel reopens after repairs", 90, source="Daily Ledger"),
    ]
    for i, t in enumerate(titles or [], start=10):
        arts.append(art(i, t, 5, priority=9, breaking=True))
    content = select_articles(arts, s.digests["daily"], NOW, base_url=s.base_url)
    p = make_variants(s, "daily", "2026-11-25", NOW, content).for_topics(())
    assert p is not None
    return p


def recipient(name: str = "Ana Lima", addr: str = "ana@example.org") -> Recipient:
    return Recipient(
        email=addr,
        name=name,
        subscriber_id=42,
        unsubscribe_url="https://news.example.com/unsubscribe/TOKEN42",
        preferences_url="https://news.example.com/preferences/PREF42",
        unsubscribe_mailto="mailto:unsubscribe@news.example.com?subject=unsubscribe%20TOKEN42",
    )


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def html_of(msg: EmailMessage) -> str:
    return msg.get_body(("html",)).get_content()  # type: ignore[union-attr]


def text_of(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def scrub(data: bytes) -> str:
    """The message with its random parts (boundary, nothing else) made stable."""
    text = data.decode("ascii")
    boundary = re.search(r'boundary="([^"]+)"', text).group(1)  # type: ignore[union-attr]
    text = text.replace(boundary, "BOUNDARY")
    return re.sub(r"^Message-ID: .*$", "Message-ID: <SCRUBBED>", text, flags=re.M)


def test_golden_email(request: pytest.FixtureRequest) -> None:
    """The whole rendered message; regenerate with DIGEST_UPDATE_GOLDEN=1 after a deliberate change."""
    import os

    data = scrub(prepared().fill(recipient(), NOW))
    if os.environ.get("DIGEST_UPDATE_GOLDEN") or not GOLDEN.exists():
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(data.encode("ascii"))
        if not os.environ.get("DIGEST_UPDATE_GOLDEN"):
            pytest.fail("golden file was missing and has been written; review and commit it")
    assert data == GOLDEN.read_bytes().decode("ascii")


def test_message_is_multipart_alternative_with_text_first_then_html() -> None:
    msg = parse(prepared().fill(recipient(), NOW))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in msg.iter_parts())


def test_lines_end_in_crlf_and_stay_within_998_octets() -> None:
    data = prepared().fill(recipient(), NOW)
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_required_headers_are_present() -> None:
    msg = parse(prepared().fill(recipient(), NOW))
    assert msg["From"] == "The Briefing <briefing@news.example.com>"
    assert msg["To"] == "Ana Lima <ana@example.org>"
    assert msg["Date"] == "Wed, 25 Nov 2026 06:00:00 +0000"
    assert msg["List-Id"] == "The Briefing <daily.news.example.com>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["MIME-Version"] == "1.0"


def test_list_unsubscribe_has_https_link_and_mailto() -> None:
    msg = parse(prepared().fill(recipient(), NOW))
    links = re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"]))
    assert links == [
        "https://news.example.com/unsubscribe/TOKEN42",
        "mailto:unsubscribe@news.example.com?subject=unsubscribe%20TOKEN42",
    ]


def test_message_id_is_deterministic_per_edition_and_subscriber() -> None:
    a = parse(prepared().fill(recipient(), NOW))["Message-ID"]
    b = parse(prepared().fill(recipient(), NOW))["Message-ID"]
    assert a == b == "<daily.2026-11-25.s42@news.example.com>"
    assert message_id("daily", "2026-11-25", 43, "news.example.com") != a


def test_subject_is_one_line_without_control_characters() -> None:
    p = prepared(["Evil\r\nBcc: victim@example.com\x07 headline"])
    msg = parse(p.fill(recipient(), NOW))
    assert "\n" not in msg["Subject"] and "\x07" not in msg["Subject"]
    assert msg["Bcc"] is None
    assert "Evil Bcc: victim@example.com headline" in msg["Subject"]


def test_subject_header_carries_ampersands_and_apostrophes_as_written() -> None:
    data = prepared(["Faith & Joy! l'état"]).fill(recipient(), NOW)
    data.decode("ascii")
    assert parse(data)["Subject"] == "The Briefing: Faith & Joy! l'état"


def test_no_article_field_can_inject_a_header() -> None:
    p = prepared(["Headline\r\nX-Injected: yes"])
    data = p.fill(recipient(name="Eve\r\nX-Injected: yes"), NOW)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-Injected" not in head


def test_non_ascii_name_and_subject_are_rfc2047_encoded() -> None:
    p = prepared(["Zürich café opens — très bien"])
    data = p.fill(recipient(name="Chloé Müller"), NOW)
    data.decode("ascii")  # the wire form is 7-bit
    msg = parse(data)
    assert msg["To"].addresses[0].display_name == "Chloé Müller"
    assert "Zürich café opens — très bien" in msg["Subject"]


def test_personal_fields_are_escaped_in_html_and_literal_in_text() -> None:
    msg = parse(prepared().fill(recipient(name="<b>Bo</b> & Co"), NOW))
    assert "<b>Bo</b>" not in html_of(msg)
    assert "&lt;b&gt;Bo&lt;/b&gt;" in html_of(msg)
    assert "Hi <b>Bo</b>," in text_of(msg)


def test_each_recipient_gets_their_own_links() -> None:
    p = prepared()
    other = Recipient(
        "ben@example.org",
        "Ben",
        7,
        "https://news.example.com/unsubscribe/B7",
        "https://news.example.com/preferences/P7",
        "mailto:u@x?subject=B7",
    )
    mine, theirs = html_of(parse(p.fill(recipient(), NOW))), html_of(parse(p.fill(other, NOW)))
    assert "TOKEN42" in mine and "B7" not in mine
    assert "B7" in theirs and "TOKEN42" not in theirs


def test_article_text_is_never_evaluated_as_a_template() -> None:
    msg = parse(prepared(["Maths {{ 7*7 }} and {% include 'email/base.html' %} today"]).fill(recipient(), NOW))
    assert "{{ 7*7 }}" in text_of(msg) and "49" not in text_of(msg).split("Maths")[1][:20]
    assert "{% include 'email/base.html' %}" in html_of(msg).replace("&#39;", "'")


def test_article_cannot_forge_a_personal_field_marker() -> None:
    p = prepared()
    marker_shape = "zq0000000000000000unsubscribeurlqz"
    p2 = prepared([f"Headline {marker_shape}"])
    assert marker_shape in html_of(parse(p2.fill(recipient(), NOW)))
    assert p.html != p2.html


def test_test_copy_recipient_gets_inert_links() -> None:
    r = trial_recipient(settings(), "editor@example.net")
    msg = parse(prepared().fill(r, NOW))
    assert msg["To"] == "editor@example.net"
    assert "/unsubscribe/preview" in str(msg["List-Unsubscribe"])
    assert msg["Message-ID"].startswith("<daily.2026-11-25.test-")


def test_no_line_of_a_copy_starts_with_a_dot() -> None:
    # Titles and a name starting with dots, and a long title that quoted-printable
    # wraps: SMTP would have to dot-stuff every such line, and the sender does not.
    titles = [".NET 10 ships", "...and then the lights went out", "." * 150, "x" * 75 + "." + "y" * 80]
    data = prepared(titles).fill(recipient(name=".Ana"), NOW)
    assert b"\n." not in data and not data.startswith(b".")
    msg = parse(data)
    for title in titles:
        assert title in text_of(msg) and title in html_of(msg)
    body = data.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


def test_leading_dots_are_encoded_without_changing_the_text() -> None:
    import binascii
    import random

    from digest.compose.message import _qp

    rng = random.Random(7)
    for _ in range(2000):
        text = "".join(rng.choice(".. a=é\n\t.x") for _ in range(rng.randint(0, 300)))
        encoded = _qp(text)
        lines = encoded.split(b"\r\n")
        assert not any(line.startswith(b".") for line in lines), text
        # Never longer than 76, or than binascii made it (it writes a trailing "=20" past 76).
        plain = binascii.b2a_qp(text.replace("\r\n", "\n").encode(), istext=True).split(b"\n")
        assert max(len(line) for line in lines) <= max(76, *(len(line) for line in plain)), text
        assert binascii.a2b_qp(encoded.replace(b"\r\n", b"\n")).decode() == text.replace("\r\n", "\n"), text
