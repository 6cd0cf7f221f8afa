"""The corpus of real feeds all the way to the inbox: feed files -> import -> send -> the .eml.

Every stored item of every corpus feed (``tests/ingest/corpus.py``) must be in the
subscriber's e-mail with its title and link intact, or be named in ``digest send``'s
output as left out, with the reason. Items in a right-to-left or other declared
language carry it on their story.
"""

from __future__ import annotations

import email
import html
import re
from email import policy
from pathlib import Path

import pytest

from digest.transport.sink import SmtpSink
from tests.cli.test_delivery_cli import digest
from tests.ingest.corpus import corpus, import_corpus

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, db_url: str, smtp_url: str) -> Path:
    lines = [
        f'database_url = "{db_url}"',
        f'smtp_url = "{smtp_url}"',
        'secret_key = "a-test-secret-that-is-long-enough-for-the-web-app"',
        'base_url = "https://news.example.com"',
        'from_addr = "The Briefing <briefing@news.example.com>"',
        "[delivery]",
        f'journal_dir = "{tmp_path / "journal"}"',
        "[digests.daily]",
        'title = "The Briefing"',
        # The corpus spans twenty years: the whole of it is "recent" for this edition.
        'lookback = "9000d"',
        "max_articles = 500",
    ]
    path = tmp_path / "digest.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def html_of(data: bytes) -> str:
    part = email.message_from_bytes(data, policy=policy.default).get_body(preferencelist=("html",))
    assert part is not None
    return html.unescape(part.get_content())  # type: ignore[attr-defined]


def test_every_corpus_item_reaches_the_email_intact_or_is_reported(db_url: str, sink: SmtpSink, tmp_path: Path) -> None:
    feeds = corpus()
    config = write_config(tmp_path, db_url, sink.url)
    imported = import_corpus(db_url, feeds, tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert digest(config, "subscribers", "add", "ana@example.org", "--name", "Ana").returncode == 0

    sent = digest(config, "send", "daily")

    assert sent.returncode == 0, sent.stderr
    [message] = sink.messages
    body = html_of(message.data)
    left_out = sent.stdout
    missing = []
    for feed in feeds:
        for item in feed.stored:
            title = " ".join(item.title.split())
            if title in " ".join(body.split()):
                if item.link:
                    assert f'href="{item.link}"' in body or item.link in body, f"{feed.name}: link of {title!r}"
            elif title not in " ".join(left_out.split()):
                missing.append(f"{feed.name}: {title!r}")
    assert missing == [], "neither in the e-mail nor reported as left out:\n" + "\n".join(missing)


def text_of(body: str) -> str:
    """The words of an HTML body, tags dropped (a lead-in's <strong> splits its summary), spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


@pytest.mark.parametrize("language", ["fa", "ar", "he", "zh-CN", "ko"])
def test_a_right_to_left_or_cjk_feed_keeps_title_summary_language_and_direction_in_the_email(
    language: str, db_url: str, sink: SmtpSink, tmp_path: Path
) -> None:
    feeds = [feed for feed in corpus() if feed.language == language]
    assert feeds, f"the corpus has a feed in {language}"
    config = write_config(tmp_path, db_url, sink.url)
    assert import_corpus(db_url, feeds, tmp_path).returncode == 0
    assert digest(config, "subscribers", "add", "ana@example.org").returncode == 0

    assert digest(config, "send", "daily").returncode == 0

    body = html_of(sink.messages[0].data)
    words = text_of(body)
    for item in (item for feed in feeds for item in feed.stored):
        story = re.search(
            rf'<[^>]*lang="{language}"[^>]*>(?:(?!</table>).)*?' + re.escape(item.title.split()[0]), body, re.S
        )
        assert story is not None, f"{item.title!r} has no lang={language} story around it"
        assert " ".join(item.title.split()) in words
        assert " ".join(item.summary.split()) in words, f"summary of {item.title!r} not intact"
    assert 'dir="auto"' in body
