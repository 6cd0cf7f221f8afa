"""``digest articles``: import, add, list, hide, lead and remove articles."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from digest.cli.base import JSON_HELP, MANY_RECORDS, ProgressOnDemand, app, err, finish_import, out, print_rows, state
from digest.core.errors import InputError
from digest.core.settings import parse_duration

if TYPE_CHECKING:
    from digest.store.models import Article

articles_app = typer.Typer(help="Import, add, list, hide and remove articles.", no_args_is_help=True)
app.add_typer(articles_app, name="articles")


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
    with ProgressOnDemand("importing", MANY_RECORDS) as bar, session_scope(st.engine) as session:
        bar.total(len(result.drafts))
        report = upsert_articles(session, result.drafts, st.clock.now(), progress=bar.advance)
    for warning in result.warnings:  # nothing lost: said, never counted as rejected
        err.print(f"[yellow]warning[/yellow]: {escape(str(warning))}", highlight=False, soft_wrap=True)
    unread = sum(p.whole_source for p in result.problems)
    code = UnreadableSourceError.exit_code if unread else InputError.exit_code
    summary = f"imported {report.inserted} new, updated {report.updated}"
    if report.merged:
        summary += f", merged {report.merged} (same link as another item, kept as one story)"
    finish_import(result.problems, summary, code, unread)


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
    priority: Annotated[
        int, typer.Option(help="Higher ranks first; breaking with priority >= alert_priority: an alert.")
    ] = 0,
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
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Show at most this many (the newest).")] = None,
) -> None:
    """List recent articles, newest first."""
    from digest.store.articles import recent_articles
    from digest.store.db import session_scope

    st = state(ctx, reads_only=True)
    try:
        delta = parse_duration(since)
    except ValueError as exc:
        raise InputError("--since", str(exc)) from None
    now = st.clock.now()
    with session_scope(st.engine) as session:
        rows = recent_articles(
            session, now - delta, now + timedelta(days=3650), None if limit is None else limit + 1, include_hidden=True
        )

    def cells(a: Article) -> tuple[str, ...]:
        flag = ("[dim](hidden)[/dim] " if a.hidden else "") + ("[red]●[/red] " if a.breaking else "")
        return (
            str(a.id),
            f"{a.published_at:%Y-%m-%d %H:%M}",
            escape(a.category),
            escape(a.source),
            flag + escape(a.title),
        )

    header = ("id", "published (UTC)", "category", "source", "title")
    print_rows(rows, as_json, {"body"}, header, cells, "article", limit)


ArticleIds = Annotated[list[int], typer.Argument(help="Article ids (see digest articles list).", min=1)]


@articles_app.command("hide")
def articles_hide(ctx: typer.Context, ids: ArticleIds) -> None:
    """Keep articles out of future editions and off the archive pages (digest articles unhide undoes it).

    Editions already built leave them out too: resends, deliveries still queued and
    the web copies. Mail already delivered cannot be recalled.
    """
    _set_hidden(ctx, ids, True)


@articles_app.command("unhide")
def articles_unhide(ctx: typer.Context, ids: ArticleIds) -> None:
    """Show hidden articles again (in new editions and on the archive pages)."""
    _set_hidden(ctx, ids, False)


def _set_hidden(ctx: typer.Context, ids: list[int], hidden: bool) -> None:
    from digest.store.articles import set_hidden
    from digest.store.db import session_scope

    st = state(ctx)
    with session_scope(st.engine) as session:
        done = set_hidden(session, ids, hidden, st.clock.now())
    listed = ", ".join(map(str, done))
    if hidden:
        out.print(f"hid {len(done)} article(s) ({listed}): kept out of new editions and the archive")
    else:
        out.print(f"unhid {len(done)} article(s) ({listed})")


@articles_app.command("lead")
def articles_lead(
    ctx: typer.Context,
    article_id: Annotated[int, typer.Argument(help="Article id (see digest articles list).")],
    text: Annotated[
        str | None, typer.Argument(help="The lead-in: one line of plain text, at most 280 characters.")
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the lead-in: the summary's first sentence stands in.")
    ] = False,
) -> None:
    """Write the lead-in of an article: the bold opening line it gets among the top stories (lead_ins)."""
    from digest.ingest.records import clean_lead
    from digest.store.articles import set_lead
    from digest.store.db import session_scope

    if clear == (text is not None):
        raise InputError("articles lead", "give the lead-in text, or --clear (not both)")
    lead = "" if clear else clean_lead(text or "", f"article {article_id}")
    if not clear and not lead:
        raise InputError(f"article {article_id}", "lead is empty; use --clear to remove a lead-in")
    st = state(ctx)
    with session_scope(st.engine) as session:
        set_lead(session, article_id, lead, st.clock.now())
    out.print(f"cleared the lead-in of article {article_id}" if clear else f"lead-in of article {article_id} set")


@articles_app.command("remove")
def articles_remove(ctx: typer.Context, ids: ArticleIds) -> None:
    """Delete articles for good, also from the editions that carried them (their archive pages)."""
    from digest.store.articles import remove_articles
    from digest.store.db import session_scope

    st = state(ctx)
    with session_scope(st.engine) as session:
        done = remove_articles(session, ids)
    out.print(f"removed {len(done)} article(s) ({', '.join(map(str, done))})")
