"""``digest demo``: one real send, end to end, on a fresh SQLite database.

Sample articles (written for this demo, fictional), three subscribers, a local
SMTP sink on a free loopback port that saves what it receives, and one send
through the real SMTP transport.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from digest.app.send import SendReport, send_digest
from digest.core.clock import Clock
from digest.core.settings import DigestConfig, Settings
from digest.ingest import ArticleDraft
from digest.ingest.save import upsert_articles
from digest.store.db import ensure_schema, make_engine, session_scope
from digest.store.subscribers import add_subscriber
from digest.transport.sink import SmtpSink
from digest.transport.smtp import smtp_from_settings

# (minutes ago, category, source, breaking, priority, title, summary)
DEMO_ARTICLES = [
    (
        35,
        "World",
        "Harbour Times",
        True,
        5,
        "Coastal cities agree on a shared storm-surge warning system",
        "Twelve port cities signed a pact to pool tide gauges and sirens, promising alerts 40 minutes earlier "
        "than today's patchwork of local systems.",
    ),
    (
        80,
        "World",
        "Daily Ledger",
        False,
        2,
        "Mountain rail tunnel reopens after a year of repairs",
        "The 14 km tunnel carries 200 trains a day again; freight operators expect the backlog to clear by spring.",
    ),
    (
        150,
        "Business",
        "Market Wire",
        False,
        3,
        "Small lenders tighten credit as deposits drift to money funds",
        "Regional banks raised the bar for business loans for a third straight quarter, a central bank survey shows.",
    ),
    (
        200,
        "Business",
        "Daily Ledger",
        False,
        1,
        "Grocery chain pilots receipt-free checkout in four towns",
        "Shoppers scan a code on the way in and are billed on the way out; the chain says queues fell by half.",
    ),
    (
        260,
        "Science",
        "Lab Notes",
        False,
        4,
        "Volunteers map 3,000 new asteroids from archived telescope plates",
        "A citizen-science project digitised glass plates from the 1950s and matched them against modern orbits.",
    ),
    (
        320,
        "Science",
        "Lab Notes",
        False,
        1,
        "Why some bread rises better at altitude, explained",
        "Lower air pressure lets gas bubbles expand faster; bakers compensate with less yeast and cooler dough.",
    ),
    (
        400,
        "Technology",
        "Circuit",
        False,
        2,
        "Open-source weather model beats national forecasts on rainfall",
        "In a year-long trial the community model was more accurate on 24-hour rainfall in 61% of regions.",
    ),
    (
        500,
        "Technology",
        "Circuit",
        False,
        0,
        "City libraries start lending home energy monitors",
        "Borrowers clip a sensor to their meter for two weeks and get a report of where their electricity goes.",
    ),
]

DEMO_SUBSCRIBERS = [
    ("ana@example.org", "Ana Lima", "Europe/Lisbon", None),
    ("ben@example.org", "Ben Okafor", "America/New_York", "Science,Technology"),
    ("chloe@example.org", "Chloé Martin", "Europe/Paris", None),
]


@dataclass
class DemoSummary:
    database: Path
    mail_dir: Path
    report: SendReport
    files: list[Path] = field(default_factory=list)
    config: Path | None = None

    def describe(self) -> str:
        lines = [
            f"database: {self.database}",
            f"sent {self.report.sent} message(s) in {self.report.variants} content variant(s), "
            f"failed {self.report.failed}",
            f"saved to {self.mail_dir}/:",
        ]
        lines += [f"  {p}" for p in self.files]
        lines.append("open one in a mail client, or see the edition in a browser:")
        lines.append(f"  digest --config {self.config} preview --open")
        lines.append(f"try other commands on the demo's data with --config {self.config}, e.g.:")
        lines.append(f"  digest --config {self.config} subscribers list")
        return "\n".join(lines)


def write_config(path: Path, settings: Settings) -> None:
    """The demo's settings as a TOML file, so the commands the summary suggests find its data."""
    daily = settings.digests["daily"]

    def q(value: str) -> str:
        return json.dumps(value)  # a JSON string is a valid TOML basic string

    text = "\n".join(
        [
            "# Written by `digest demo`: its settings, for trying commands on its data.",
            f"database_url = {q(settings.database_url)}",
            "# `digest sink` listens here.",
            f"smtp_url = {q('smtp://127.0.0.1:1025')}",
            f"secret_key = {q(settings.secret_key.get_secret_value())}",
            f"from_addr = {q(settings.from_addr)}",
            f"base_url = {q(settings.base_url)}",
            f"postal_address = {q(settings.postal_address)}",
            f"mail_dir = {q(str(path.parent / 'mail'))}",
            "",
            "[digests.daily]",
            f"title = {q(daily.title)}",
            f"sections = [{', '.join(q(x) for x in daily.sections)}]",
            "",
        ]
    )
    # Owner-only: it holds the demo's secret key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def demo_drafts(clock: Clock) -> list[ArticleDraft]:
    now = clock.now()
    drafts = []
    for minutes, category, source, breaking, priority, title, summary in DEMO_ARTICLES:
        slug = "-".join(title.lower().split()[:6]).replace(",", "")
        drafts.append(
            ArticleDraft(
                title=title,
                url=f"https://news.example.com/{category.lower()}/{slug}",
                source=source,
                summary=summary,
                body=f"<p>{summary}</p>",
                category=category,
                published_at=now - timedelta(minutes=minutes),
                breaking=breaking,
                priority=priority,
            )
        )
    return drafts


def run_demo(directory: Path, clock: Clock) -> DemoSummary:
    """Create ``directory/demo.db``, fill it, and send one edition into a sink."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    mail_dir = directory / "mail"
    shutil.rmtree(mail_dir, ignore_errors=True)
    with SmtpSink(directory=mail_dir) as sink:
        settings = Settings(
            database_url=f"sqlite:///{db.resolve()}",
            smtp_url=sink.url,  # type: ignore[arg-type]
            secret_key=secrets.token_urlsafe(32),  # type: ignore[arg-type]
            from_addr="The Daily Briefing <briefing@news.example.com>",
            base_url="https://news.example.com",
            postal_address="Example News Ltd, 1 Harbour Road, Springfield",
            digests={
                "daily": DigestConfig(
                    title="The Daily Briefing", sections=["World", "Business", "Science", "Technology"]
                )
            },
        )
        engine = make_engine(settings.database_url)
        ensure_schema(engine)
        now = clock.now()
        with session_scope(engine) as session:
            upsert_articles(session, demo_drafts(clock), now)
            for email, name, tz, topics in DEMO_SUBSCRIBERS:
                add_subscriber(session, email, now, name=name, timezone=tz, topics=topics)
        with smtp_from_settings(settings) as smtp:
            report = send_digest(engine, settings, "daily", smtp, clock)
        files = list(sink.handler.saved)
        engine.dispose()
    config = directory / "demo.toml"
    write_config(config, settings)
    return DemoSummary(database=db, mail_dir=mail_dir, report=report, files=files, config=config)
