"""The ``digest`` command: a thin shell over the library.

Each command parses its input, wires dependencies (settings, engine, transport,
clock) and calls one library function. Errors derived from DigestError become a
one-line message and an exit code here, in ``main``, and nowhere else.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from digest.cli.base import app, err, out, parse_at, progress_bar, setup_logging, state
from digest.core.errors import DigestError, InputError
from digest.core.settings import parse_duration

articles_app = typer.Typer(help="Import, add and list articles.", no_args_is_help=True)
subscribers_app = typer.Typer(help="Manage subscribers.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(articles_app, name="articles")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(db_app, name="db")


def _finish_import(problems: Sequence[object], summary: str, code: int = InputError.exit_code, unread: int = 0) -> None:
    """Report each rejected record on stderr, the summary on stdout; exit ``code`` if any was rejected.

    ``unread``: how many of the problems are whole sources that could not be read.
    """
    for problem in problems:
        err.print(f"[red]error[/red]: {escape(str(problem))}", highlight=False, soft_wrap=True)
    note = f" ({unread} of them whole source(s) not read)" if unread else ""
    out.print(f"{summary}, rejected {len(problems)}{note}")
    if problems:
        raise typer.Exit(code)


# ---------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the schema migrations."""
    from digest.store.db import current_revision, make_engine, redact, upgrade

    st = state(ctx)
    engine = make_engine(st.settings.database_url)
    upgrade(engine, revision)
    out.print(f"database {redact(st.settings.database_url)} at revision {current_revision(engine)}")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the schema revision of the database."""
    from digest.store.db import current_revision, make_engine

    out.print(current_revision(make_engine(state(ctx).settings.database_url)) or "empty")


# ---------------------------------------------------------------- articles


@articles_app.command("import")
def articles_import(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(help="Files or URLs (RSS, Atom, JSON Feed, JSON, NDJSON, HTML or text page); - for stdin."),
    ],
    category: Annotated[str, typer.Option(help="Category for articles that have none.")] = "",
) -> None:
    """Import articles; bad records are reported, good ones kept.

    Exit status: 0 when everything was imported; 3 when some records were rejected;
    7 when a whole source could not be read (missing, too large, not JSON...). The
    good records of every readable source are imported either way.
    """
    from digest.core.errors import UnreadableSourceError
    from digest.ingest.reader import read_sources
    from digest.ingest.save import upsert_articles
    from digest.store.db import session_scope

    st = state(ctx)
    svc = st.settings.service
    result = read_sources(
        paths,
        default_category=category,
        max_bytes=st.settings.import_max_bytes,
        fetch_timeout=svc.feed_timeout,
        allow_private=svc.feed_allow_private,
    )
    with session_scope(st.engine) as session:
        report = upsert_articles(session, result.drafts, st.clock.now())
    for warning in result.warnings:  # nothing lost: said, never counted as rejected
        err.print(f"[yellow]warning[/yellow]: {escape(str(warning))}", highlight=False, soft_wrap=True)
    unread = sum(p.whole_source for p in result.problems)
    code = UnreadableSourceError.exit_code if unread else InputError.exit_code
    summary = f"imported {report.inserted} new, updated {report.updated}"
    if report.merged:
        summary += f", merged {report.merged} (same link as another item, kept as one story)"
    _finish_import(result.problems, summary, code, unread)


@articles_app.command("add")
def articles_add(
    ctx: typer.Context,
    title: Annotated[str, typer.Option(help="Headline.")],
    url: Annotated[str | None, typer.Option(help="Absolute link to the article.")] = None,
    summary: Annotated[str, typer.Option(help="One-paragraph summary.")] = "",
    category: Annotated[str, typer.Option(help="Category (section).")] = "",
    source: Annotated[str, typer.Option(help="Publisher name.")] = "",
    published: Annotated[str | None, typer.Option(help="ISO 8601 time with offset (default now).")] = None,
    breaking: Annotated[bool, typer.Option(help="Breaking news.")] = False,
    priority: Annotated[int, typer.Option(help="Higher ranks first.")] = 0,
) -> None:
    """Add one article."""
    from digest.ingest.records import draft_from_record
    from digest.ingest.save import upsert_articles
    from digest.store.db import session_scope

    st = state(ctx)
    record: dict[str, Any] = {"title": title, "summary": summary, "category": category, "source": source}
    record.update(breaking=breaking, priority=priority)
    if url:
        record["url"] = url
    if published:
        record["published_at"] = published
    draft = draft_from_record(record, "articles add")
    with session_scope(st.engine) as session:
        report = upsert_articles(session, [draft], st.clock.now())
    out.print("added" if report.inserted else "updated")


@articles_app.command("list")
def articles_list(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="Only articles published this recently, e.g. 24h, 7d.")] = "7d",
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List recent articles, newest first."""
    from digest.store.articles import recent_articles
    from digest.store.db import session_scope

    st = state(ctx)
    try:
        delta = parse_duration(since)
    except ValueError as exc:
        raise InputError("--since", str(exc)) from None
    now = st.clock.now()
    with session_scope(st.engine) as session:
        rows = recent_articles(session, now - delta, now + timedelta(days=3650))
    if as_json:
        for a in rows:
            out.print_json(a.model_dump_json(exclude={"body"}))
        return
    table = Table("id", "published (UTC)", "category", "source", "title", box=None)
    for a in rows:
        flag = "[red]●[/red] " if a.breaking else ""
        table.add_row(
            str(a.id), f"{a.published_at:%Y-%m-%d %H:%M}", escape(a.category), escape(a.source), flag + escape(a.title)
        )
    out.print(table)
    out.print(f"{len(rows)} article(s)")


# ---------------------------------------------------------------- subscribers


@subscribers_app.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: str,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    timezone: Annotated[str | None, typer.Option(help="IANA timezone, e.g. Europe/Berlin.")] = None,
    topics: Annotated[str | None, typer.Option(help="Comma-separated sections; empty = all.")] = None,
) -> None:
    """Add an active subscriber."""
    from digest.store.db import session_scope
    from digest.store.subscribers import add_subscriber

    st = state(ctx)
    with session_scope(st.engine) as session:
        sub, _ = add_subscriber(session, email, st.clock.now(), name=name, timezone=timezone, topics=topics)
        out.print(f"added {escape(sub.email)}")


@subscribers_app.command("import")
def subscribers_import(ctx: typer.Context, path: Path) -> None:
    """Import subscribers from CSV (columns: email, name, timezone, topics, status, send_time).

    All or nothing per file: bad rows are reported and skipped, and the good ones are
    committed together; if the database refuses the write (disk full, a constraint)
    no row of the file is kept (exit 8).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from digest.core.errors import StoreError
    from digest.core.logs import mask_email
    from digest.ingest.reader import read_capped
    from digest.store.db import session_scope
    from digest.store.subscribers import import_csv

    st = state(ctx)
    data = read_capped(str(path), st.settings.import_max_bytes)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"cannot read: {exc}") from None
    try:
        with session_scope(st.engine) as session:
            report = import_csv(session, text, str(path), st.clock.now())
    except SQLAlchemyError as exc:
        # The driver's first line says why ("database or disk is full"); it may quote a
        # row's values, so addresses are masked.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StoreError(f"{path}: nothing imported, no row of the file kept: {mask_email(reason)}") from None
    _finish_import(report.problems, f"added {report.added}, updated {report.updated}")


@subscribers_app.command("list")
def subscribers_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List subscribers."""
    from digest.store.db import session_scope
    from digest.store.subscribers import list_subscribers

    st = state(ctx)
    with session_scope(st.engine) as session:
        subs = list_subscribers(session, status)
    if as_json:
        for s in subs:
            out.print_json(s.model_dump_json(exclude={"email_key"}))
        return
    table = Table("email", "name", "status", "timezone", "topics", box=None)
    for s in subs:
        table.add_row(escape(s.email), escape(s.name), s.status, s.timezone or "", escape(", ".join(s.topics)))
    out.print(table)
    out.print(f"{len(subs)} subscriber(s)")


@subscribers_app.command("remove")
def subscribers_remove(ctx: typer.Context, email: str) -> None:
    """Delete a subscriber and their delivery history."""
    from digest.store.db import session_scope
    from digest.store.subscribers import remove_subscriber

    with session_scope(state(ctx).engine) as session:
        remove_subscriber(session, email)
    out.print(f"removed {escape(email)}")


@subscribers_app.command("unsubscribe")
def subscribers_unsubscribe(ctx: typer.Context, email: str) -> None:
    """Mark a subscriber unsubscribed (kept, so they are never re-added by an import by mistake)."""
    from digest.store.db import session_scope
    from digest.store.models import SubscriberStatus
    from digest.store.subscribers import set_status

    st = state(ctx)
    with session_scope(st.engine) as session:
        set_status(session, email, SubscriberStatus.UNSUBSCRIBED, st.clock.now())
    out.print(f"unsubscribed {escape(email)}")


# ---------------------------------------------------------------- send and preview


@app.command()
def send(
    ctx: typer.Context,
    digest: Annotated[str | None, typer.Argument(help="Digest name (default: the first configured).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render everything, send and record nothing.")] = False,
    to: Annotated[str | None, typer.Option("--to", help="Send one test copy to this address; record nothing.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Pretend it is this time (ISO 8601).")] = None,
) -> None:
    """Build (or find) the current edition and deliver it to every active subscriber."""
    from digest.app.send import send_digest, send_test
    from digest.compose.dkim import signer_from_settings
    from digest.transport.smtp import MemoryTransport, smtp_from_settings

    st = state(ctx)
    setup_logging(st)
    name, cfg = st.settings.digest(digest)
    clock = parse_at(at, cfg.timezone)
    signer = signer_from_settings(st.settings)
    if dry_run or to:
        from digest.store.db import session_scope
        from digest.store.subscribers import normalise_email

        transport: Any = MemoryTransport()
        if to and not dry_run:
            normalise_email(to, "--to")
            transport = smtp_from_settings(st.settings)
        with session_scope(st.engine) as session:
            emails = [to] if to else [s.email for s in _active(session)]
            res = send_test(session, st.settings, name, emails, transport, clock, signer=signer)
        transport.close()
        verb = "would send" if dry_run else "sent test copy to"
        out.print(f"{name} {res.slot}: {verb} {res.sent} message(s) ({res.variants} variant(s), {res.skipped} skipped)")
        for w in res.warnings:
            err.print(f"[yellow]warning[/yellow]: {escape(w)}", highlight=False)
        return
    # None: the delivery engine's pool ([delivery] servers, connections, processes).
    with progress_bar() as bar:
        task = bar.add_task("send", total=None)
        report = send_digest(
            st.engine,
            st.settings,
            name,
            None,
            clock,
            progress=lambda n: bar.advance(task, n),
            on_total=lambda n: bar.update(task, total=n),
            signer=signer,
        )
    if report.empty:
        out.print(f"{name} {report.slot}: no new articles; nothing sent (set send_empty to send anyway)")
        return
    if report.queued == 0 and report.already_sent:
        out.print(f"{name} {report.slot}: already sent to all {report.already_sent} subscriber(s); nothing to send")
        return
    out.print(
        f"{name} {report.slot}: sent {report.sent}, failed {report.failed} "
        f"({report.failed_temporary} will be retried), skipped {report.skipped + report.already_sent} "
        f"({report.already_sent} already sent)"
    )
    if report.pending_after:
        out.print(
            f"{report.pending_after} still pending (retries not yet due, or held by another sender): "
            "digest deliveries --status pending"
        )
    if report.failed_permanent:
        raise typer.Exit(1)


def _active(session: Any) -> list[Any]:
    from digest.store.models import SubscriberStatus
    from digest.store.subscribers import list_subscribers

    return list(list_subscribers(session, SubscriberStatus.ACTIVE))


@app.command()
def preview(
    ctx: typer.Context,
    digest: Annotated[str | None, typer.Argument(help="Digest name (default: the first configured).")] = None,
    subscriber: Annotated[str | None, typer.Option("--subscriber", help="Preview this subscriber's copy.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html, text or eml.")] = "html",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Preview the edition due at this time (ISO 8601).")] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the result in a browser.")] = False,
) -> None:
    """Show exactly what a subscriber would receive; records nothing."""
    from digest.app.send import preview_message
    from digest.store.db import session_scope

    if fmt not in ("html", "text", "eml"):
        raise InputError("--format", f"must be html, text or eml, not {fmt!r}")
    st = state(ctx)
    name, cfg = st.settings.digest(digest)
    clock = parse_at(at, cfg.timezone)
    with session_scope(st.engine) as session:
        result = preview_message(session, st.settings, name, clock, subscriber)
    payload = {"eml": result.data, "html": result.html.encode(), "text": result.text.encode()}[fmt]
    for w in result.warnings:
        err.print(f"[yellow]warning[/yellow]: {escape(w)}", highlight=False)
    if output is None and open_:
        output = Path("var") / f"preview-{name}.{'txt' if fmt == 'text' else fmt}"
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(payload)
        err.print(f"wrote {output}")
        if open_:
            import webbrowser

            webbrowser.open(output.resolve().as_uri())
    else:
        sys.stdout.buffer.write(payload)
        sys.stdout.flush()


# ---------------------------------------------------------------- demo and sink


@app.command()
def demo(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo database and mail go.")] = Path("var"),
) -> None:
    """Run one real send on a fresh SQLite database into a local SMTP sink."""
    from digest.app.demo import run_demo

    summary = run_demo(directory, state(ctx).clock)
    out.print(summary.describe(), soft_wrap=True, highlight=False)


@app.command()
def sink(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 1025,
    directory: Annotated[Path, typer.Option("--dir", help="Save received mail here as .eml files.")] = Path("var/mail"),
) -> None:
    """Run a local SMTP server that saves what it receives (for previews and tests)."""
    import time

    from digest.transport.sink import SmtpSink

    with SmtpSink(port=port, directory=directory) as s:
        out.print(f"SMTP sink on {s.url}, saving to {directory}/ (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


# The other command modules register their groups on ``app`` when imported: listed
# here, not discovered, so what the CLI offers is read in one place.
import digest.cli.delivery  # noqa: E402, F401
import digest.cli.service  # noqa: E402, F401
import digest.cli.web  # noqa: E402, F401


def main() -> None:
    """Console entry point: DigestError becomes a one-line message and its exit code."""
    try:
        # Outside standalone mode click returns (not raises) the code of typer.Exit.
        rc = app(standalone_mode=False)
    except DigestError as exc:
        err.print(f"[red]error[/red]: {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        # Newer typer vendors click: its usage errors derive from typer.TyperException.
        if isinstance(exc, click.ClickException | typer.TyperException) and hasattr(exc, "show"):
            exc.show()
            sys.exit(getattr(exc, "exit_code", 2))
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
