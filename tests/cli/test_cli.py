"""The ``digest`` command through its real entry point: a subprocess, a SQLite file, a real SMTP sink.

The CLI uses the system clock, so articles here are published minutes before the
real "now". Stores are seeded and inspected in-process through the library; only
the command under test runs as a subprocess (each costs about a second).
"""

from __future__ import annotations

import email
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import func, select

from digest.ingest import ArticleDraft
from digest.ingest.save import upsert_articles
from digest.store.db import make_engine, session_scope, upgrade
from digest.store.models import Article, Delivery, Edition, Subscriber, SubscriberStatus
from digest.store.subscribers import add_subscriber, set_status
from digest.transport.sink import SmtpSink

pytestmark = pytest.mark.slow

FROM_ADDR = "The Briefing <briefing@news.example.com>"
BASE_URL = "https://news.example.com"
TITLES = ("Harbour cities agree storm pact", "Lenders tighten credit", "Volunteers map asteroids")
# Markers are the opaque placeholders for personal fields; a reader must never see one.
MARKER = re.compile(r"zq[0-9a-f]{16}\w*qz")

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "d.db"


@pytest.fixture
def cli_env(tmp_path: Path, db_path: Path, sink: SmtpSink) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_DATABASE_URL=f"sqlite:///{db_path}",
        DIGEST_SMTP_URL=sink.url,
        DIGEST_SECRET_KEY="cli-test-secret",
        DIGEST_BASE_URL=BASE_URL,
        DIGEST_FROM_ADDR=FROM_ADDR,
        COLUMNS="200",  # rich wraps table cells at 80 columns when stdout is a pipe
    )
    return env


@pytest.fixture
def run(tmp_path: Path, cli_env: dict[str, str]) -> Run:
    """Run ``python -m digest.cli.main ARGS`` in tmp_path; returns the completed process."""

    def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "digest.cli.main", *args],
            cwd=tmp_path,
            env={**cli_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run_cli


@pytest.fixture
def store(db_path: Path) -> Iterator[Engine]:
    """The CLI's SQLite database, migrated, for seeding and inspecting in-process."""
    engine = make_engine(f"sqlite:///{db_path}")
    upgrade(engine)
    yield engine
    engine.dispose()


def real_now() -> datetime:
    return datetime.now(UTC)


def seed_articles(engine: Engine, titles: tuple[str, ...] = TITLES, minutes_ago: int = 5) -> None:
    now = real_now()
    drafts = [
        ArticleDraft(
            title=title,
            url=f"{BASE_URL}/story/{'-'.join(title.lower().split())}",
            source="Example Wire",
            summary=f"Summary of {title}.",
            category=("World", "Business", "Science")[i % 3],
            published_at=now - timedelta(minutes=minutes_ago + i),
        )
        for i, title in enumerate(titles)
    ]
    with session_scope(engine) as session:
        upsert_articles(session, drafts, now)


def seed_subscribers(engine: Engine, *people: tuple[str, str], unsubscribed: tuple[str, ...] = ()) -> None:
    with session_scope(engine) as session:
        for addr, name in people:
            add_subscriber(session, addr, real_now(), name=name)
        for addr in unsubscribed:
            add_subscriber(session, addr, real_now())
            set_status(session, addr, SubscriberStatus.UNSUBSCRIBED, real_now())


@pytest.fixture
def ready(store: Engine) -> Engine:
    """Fresh articles, two active subscribers and one who left."""
    seed_articles(store)
    seed_subscribers(
        store, ("ana@example.org", "Ana Lima"), ("bob@example.org", "Bob"), unsubscribed=("cy@example.org",)
    )
    return store


def count(engine: Engine, model: type) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, _class=EmailMessage, policy=policy.default)  # type: ignore[return-value]


def stamp(minutes_ago: float) -> str:
    return (real_now() - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- articles


def test_articles_import_keeps_good_lines_and_reports_bad_line(run: Run, tmp_path: Path, store: Engine) -> None:
    lines = [
        {"title": "Storm pact agreed", "url": f"{BASE_URL}/a", "published_at": stamp(5)},
        {"title": "Broken link", "url": "ftp://example.com/x", "published_at": stamp(5)},
        {"title": "Credit tightens", "url": f"{BASE_URL}/b", "published_at": stamp(6)},
    ]
    (tmp_path / "feed.ndjson").write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")

    proc = run("articles", "import", "feed.ndjson")

    assert proc.returncode == 3, proc.stderr
    assert "feed.ndjson:2:" in proc.stderr
    assert "imported 2 new" in proc.stdout
    with session_scope(store) as session:
        assert sorted(a.title for a in session.exec(select(Article))) == ["Credit tightens", "Storm pact agreed"]


def test_articles_list_since_shows_only_recent_articles(run: Run, store: Engine) -> None:
    seed_articles(store, ("Fresh story today",), minutes_ago=30)
    seed_articles(store, ("Stale story from before",), minutes_ago=3 * 24 * 60)

    proc = run("articles", "list", "--since", "24h")

    assert proc.returncode == 0, proc.stderr
    assert "Fresh story today" in proc.stdout
    assert "Stale story" not in proc.stdout
    assert "1 article(s)" in proc.stdout


def test_articles_add_stores_one_article(run: Run, store: Engine) -> None:
    proc = run("articles", "add", "--title", "Rail tunnel reopens", "--url", f"{BASE_URL}/rail", "--category", "World")

    assert proc.returncode == 0, proc.stderr
    with session_scope(store) as session:
        (article,) = session.exec(select(Article)).all()
        assert (article.title, article.url, article.category) == ("Rail tunnel reopens", f"{BASE_URL}/rail", "World")


# ---------------------------------------------------------------- subscribers


def test_subscribers_add_stores_an_active_subscriber(run: Run, store: Engine) -> None:
    # No section is configured and no article stored yet: the topics are new ones.
    proc = run(
        "subscribers",
        "add",
        "Ana@Example.org",
        "--name",
        "Ana Lima",
        "--topics",
        "World, Science",
        "--allow-new-topics",
    )

    assert proc.returncode == 0, proc.stderr
    with session_scope(store) as session:
        (sub,) = session.exec(select(Subscriber)).all()
        assert (sub.email, sub.name, sub.status, sub.topics) == (
            "Ana@example.org",
            "Ana Lima",
            SubscriberStatus.ACTIVE,
            ["World", "Science"],
        )


def test_subscribers_add_no_breaking_stores_the_opt_out(run: Run, store: Engine) -> None:
    proc = run("subscribers", "add", "ana@example.org", "--topics", "Science", "--allow-new-topics", "--no-breaking")

    assert proc.returncode == 0, proc.stderr
    with session_scope(store) as session:
        (sub,) = session.exec(select(Subscriber)).all()
        assert (sub.topics, sub.breaking) == (["Science"], False)


def test_subscribers_add_takes_breaking_stories_by_default(run: Run, store: Engine) -> None:
    proc = run("subscribers", "add", "ana@example.org", "--topics", "Science", "--allow-new-topics")

    assert proc.returncode == 0, proc.stderr
    with session_scope(store) as session:
        assert session.exec(select(Subscriber.breaking)).one() is True


def test_subscribers_import_reads_the_breaking_column(run: Run, tmp_path: Path, store: Engine) -> None:
    (tmp_path / "people.csv").write_text(
        "email,breaking\nana@example.org,false\nbob@example.org,TRUE\ncy@example.org,\ndee@example.org,maybe\n",
        encoding="utf-8",
    )

    proc = run("subscribers", "import", "people.csv")

    assert proc.returncode == 3, proc.stderr
    assert "people.csv:5:" in proc.stderr and "breaking must be true or false" in proc.stderr
    with session_scope(store) as session:
        got = {s.email: s.breaking for s in session.exec(select(Subscriber))}
    assert got == {"ana@example.org": False, "bob@example.org": True, "cy@example.org": True}


def test_subscribers_import_without_the_breaking_column_keeps_the_opt_out(
    run: Run, tmp_path: Path, store: Engine
) -> None:
    with session_scope(store) as session:
        add_subscriber(session, "ana@example.org", real_now(), breaking=False)
    (tmp_path / "people.csv").write_text("email,name\nana@example.org,Ana\n", encoding="utf-8")

    proc = run("subscribers", "import", "people.csv")

    assert proc.returncode == 0, proc.stderr
    with session_scope(store) as session:
        assert session.exec(select(Subscriber.breaking)).one() is False


def test_subscribers_import_reports_bad_row_by_file_line(run: Run, tmp_path: Path, store: Engine) -> None:
    (tmp_path / "people.csv").write_text(
        "email,name,timezone\nana@example.org,Ana,\nbob@example.org,Bob,Mars/Base\ncy@example.org,Cy,UTC\n",
        encoding="utf-8",
    )

    proc = run("subscribers", "import", "people.csv")

    assert proc.returncode == 3, proc.stderr
    assert "people.csv:3:" in proc.stderr and "Mars/Base" in proc.stderr
    assert "added 2, updated 0, rejected 1" in proc.stdout
    assert count(store, Subscriber) == 2


def test_subscribers_list_shows_every_subscriber(run: Run, ready: Engine) -> None:
    proc = run("subscribers", "list")

    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if "@" in line}
    assert set(rows) == {"ana@example.org", "bob@example.org", "cy@example.org"}
    assert "Ana Lima" in rows["ana@example.org"] and "unsubscribed" in rows["cy@example.org"]
    assert "3 subscriber(s)" in proc.stdout


def test_subscribers_list_shows_the_breaking_choice(run: Run, store: Engine) -> None:
    with session_scope(store) as session:
        add_subscriber(session, "ana@example.org", real_now(), breaking=False)
        add_subscriber(session, "bob@example.org", real_now())

    proc = run("subscribers", "list")

    assert proc.returncode == 0, proc.stderr
    assert "breaking" in proc.stdout.splitlines()[0]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if "@" in line}
    assert (rows["ana@example.org"][-1], rows["bob@example.org"][-1]) == ("no", "yes")


# ---------------------------------------------------------------- send


def test_send_delivers_to_every_active_subscriber(run: Run, ready: Engine, sink: SmtpSink) -> None:
    proc = run("send")

    assert proc.returncode == 0, proc.stderr
    assert "sent 2" in proc.stdout
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == ["ana@example.org", "bob@example.org"]
    for received in sink.messages:
        msg = parse(received.data)
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert f"<{BASE_URL}/unsubscribe/" in msg["List-Unsubscribe"] and "<mailto:" in msg["List-Unsubscribe"]
        html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert all(t in html for t in TITLES)
        assert not MARKER.search(msg.as_string())


def test_send_again_sends_nothing(run: Run, ready: Engine, sink: SmtpSink) -> None:
    run("send")

    proc = run("send")

    assert proc.returncode == 0, proc.stderr
    assert "already sent" in proc.stdout
    assert len(sink.messages) == 2


def test_send_dry_run_sends_and_records_nothing(run: Run, ready: Engine, sink: SmtpSink) -> None:
    dry = run("send", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert "would send 2" in dry.stdout
    assert sink.messages == []
    assert count(ready, Edition) == count(ready, Delivery) == 0
    assert "sent 2" in run("send").stdout  # the real send still reaches everyone
    assert len(sink.messages) == 2


def test_send_to_one_address_sends_a_test_copy_and_records_nothing(run: Run, ready: Engine, sink: SmtpSink) -> None:
    proc = run("send", "--to", "x@example.net")

    assert proc.returncode == 0, proc.stderr
    assert [m.rcpt_tos for m in sink.messages] == [["x@example.net"]]
    assert parse(sink.messages[0].data)["To"] == "x@example.net"
    assert count(ready, Edition) == count(ready, Delivery) == 0
    assert "sent 2" in run("send").stdout  # the real send still reaches everyone
    assert len(sink.messages) == 3


def seed_duplicate(engine: Engine) -> None:
    """A second source carrying the first stored story (same title and summary, own link)."""
    now = real_now()
    title = TITLES[0]
    copy = ArticleDraft(
        title=title + "!",
        url="https://other.example.net/storm-pact",
        source="Other Wire",
        summary=f"Summary of {title}.",
        category="World",
        published_at=now - timedelta(minutes=30),
    )
    with session_scope(engine) as session:
        upsert_articles(session, [copy], now)


def test_send_reports_each_duplicate_left_out_with_both_titles(run: Run, ready: Engine, sink: SmtpSink) -> None:
    seed_duplicate(ready)

    proc = run("send")

    assert proc.returncode == 0, proc.stderr
    assert "1 duplicate(s) left out:" in proc.stdout
    assert f"dropped '{TITLES[0]}!' (Other Wire): same title and summary as '{TITLES[0]}' (Example Wire)" in proc.stdout
    assert "edition.duplicate_dropped" in proc.stderr and "Other Wire" in proc.stderr
    again = run("send")  # the same slot: the stored edition still says what it left out
    assert f"dropped '{TITLES[0]}!' (Other Wire): same title and summary" in again.stdout


def test_preview_reports_each_duplicate_left_out(run: Run, ready: Engine, tmp_path: Path) -> None:
    seed_duplicate(ready)

    proc = run("preview", "--output", str(tmp_path / "p.html"))

    assert proc.returncode == 0, proc.stderr
    assert f"left out: dropped '{TITLES[0]}!' (Other Wire): same title and summary" in proc.stderr


# ---------------------------------------------------------------- preview


@pytest.mark.parametrize("fmt", ["html", "eml"])  # text: the --subscriber test
def test_preview_writes_reader_content_and_records_nothing(
    run: Run, ready: Engine, tmp_path: Path, sink: SmtpSink, fmt: str
) -> None:
    out = tmp_path / "out" / f"preview.{fmt}"

    proc = run("preview", "--format", fmt, "--output", str(out))

    assert proc.returncode == 0, proc.stderr
    body = out.read_bytes().decode("utf-8")
    if fmt == "eml":
        msg = parse(out.read_bytes())
        assert msg.get_content_type() == "multipart/alternative"
        body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    else:
        assert "<html" in body.lower()
    assert all(t in body for t in TITLES)
    assert "Hello," in body
    assert not MARKER.search(body)
    assert sink.messages == []
    assert count(ready, Edition) == count(ready, Delivery) == 0


def test_preview_for_a_subscriber_greets_them_by_name(run: Run, ready: Engine, tmp_path: Path) -> None:
    proc = run("preview", "--format", "text", "--subscriber", "ana@example.org", "--output", "ana.txt")

    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "ana.txt").read_text(encoding="utf-8")
    assert "Hi Ana," in text
    assert all(t in text for t in TITLES)


# ---------------------------------------------------------------- errors


def test_bad_config_value_exits_2_with_one_line_naming_key_and_file(run: Run, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[digests.daily]\ntimezone = "Mars/Base"\n', encoding="utf-8")

    proc = run("--config", str(cfg), "subscribers", "list")

    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "digests.daily.timezone" in lines[0] and str(cfg) in lines[0]


def test_template_typo_fails_preview_naming_template_file_and_line(run: Run, tmp_path: Path, ready: Engine) -> None:
    templates = tmp_path / "tpl"
    (templates / "email").mkdir(parents=True)
    (templates / "email" / "daily.html").write_text(
        "<html>\n<body>\n<p>{{ personal.greeting }}</p>\n<h1>{{ digset.title }}</h1>\n</body>\n</html>\n",
        encoding="utf-8",
    )

    proc = run("preview", env={"DIGEST_TEMPLATES_DIR": str(templates)})

    assert proc.returncode != 0
    assert f"{templates / 'email' / 'daily.html'}:4" in proc.stderr
    assert "digset" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_digest_name_is_a_clear_error(run: Run, ready: Engine, sink: SmtpSink) -> None:
    proc = run("send", "weekly")

    assert proc.returncode == 4
    assert "no digest named 'weekly' (configured: daily)" in proc.stderr
    assert sink.messages == []
