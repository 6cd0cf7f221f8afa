"""Service commands: ``digest serve``, ``digest status``, ``digest feeds add|list|remove``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import Engine

from digest.cli.base import JSON_HELP, app, out, print_json_line, print_unwrapped, setup_logging, state
from digest.core.errors import ConfigError, InputError
from digest.core.logs import mask_url
from digest.core.settings import parse_duration

feeds_app = typer.Typer(help="RSS/Atom feeds the service polls.", no_args_is_help=True)
app.add_typer(feeds_app, name="feeds")


def _check_schema_current(engine: Engine) -> None:
    """Refuse to serve from a database whose schema is behind this version."""
    from digest.store.db import current_revision, head_revision

    head = head_revision(engine)
    current = current_revision(engine)
    if current != head:
        raise ConfigError(
            "database_url", f"schema is at revision {current}, this version needs {head}: run `digest db upgrade`"
        )


@app.command()
def serve(
    ctx: typer.Context,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="Log lines as 'human' or 'json' (overrides the global option).")
    ] = None,
) -> None:
    """Run the service: scheduled editions, local-time slots, feed polling and the outbox, until SIGTERM."""
    from digest.service.runner import Service
    from digest.service.runner import serve as run_service
    from digest.web import WebServer

    st = state(ctx)
    if st.settings.web.enabled:
        from digest.web import check_secret_key

        check_secret_key(st.settings)  # before anything starts
    if log_format:
        st.log_format = log_format
    setup_logging(st)  # the settings (every schedule included) are checked before anything starts
    engine = st.engine
    _check_schema_current(engine)
    from digest.web import start_in_thread

    def start_web(service: Service) -> WebServer | None:
        return start_in_thread(service.settings, service.engine, service.clock, source=st.source("web.port"))

    raise typer.Exit(run_service(Service(st.settings, engine), start_web=start_web))


def _when(value: str | None) -> str:
    return (value or "-").replace("T", " ").replace("Z", "")[:19]


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, on one line, instead of tables.")] = False,
) -> None:
    """What the service is doing: jobs, next editions, last editions, feeds and the outbox."""
    from digest.app.status import collect_status

    st = state(ctx, reads_only=True)
    info = collect_status(st.engine, st.settings, st.clock.now())
    if as_json:
        print_json_line(info)
        return
    procs = info["processes"]
    alive = [p for p in procs if p["alive"]]
    leader = next((p["worker"] for p in alive if p["leader"]), None)
    out.print(f"service: {len(alive)} process(es) running; scheduler: {leader or 'none'}  (times in UTC)")
    jobs = Table("job", "next run", "what", box=None, title="jobs", title_justify="left")
    for j in info["jobs"]:
        jobs.add_row(
            j["id"],
            _when(j["next_run"]) if j["next_run"] else f"every {j['every_seconds']:g}s",
            escape(j["description"]),
        )
    out.print(jobs)
    eds = Table(
        "digest",
        "next editions",
        "last edition",
        "status",
        "queued",
        "sent",
        "failed",
        box=None,
        title="digests",
        title_justify="left",
    )
    for d in info["digests"]:
        nxt = ", ".join(f"{_when(u['next_run'])} ({escape(u['series'])})" for u in d["upcoming"][:3]) or "-"
        last = d["last_edition"] or {}
        eds.add_row(
            escape(d["name"]),
            nxt,
            escape(last.get("slot", "-")),
            last.get("status", "-"),
            str(last.get("queued", "")),
            str(last.get("sent", "")),
            str(last.get("failed", "")),
        )
    out.print(eds)
    for d in info["digests"]:
        if d.get("paused"):
            out.print(
                f"[red]paused[/red]: {escape(d['name'])} since {_when(d['paused']['since'])}: "
                f"{escape(d['paused']['reason'])} (`digest resume {escape(d['name'])}` sends again)",
                soft_wrap=True,
            )
    if info["feeds"]:
        _feeds_table(info["feeds"])
    ob = info["outbox"]
    oldest = ob["oldest_queued"]
    age = (
        f", oldest queued {oldest['age_seconds']}s ago ({escape(oldest['digest'])} {escape(oldest['slot'])})"
        if oldest
        else ""
    )
    out.print(f"outbox: {ob['pending']} pending{age}")
    _print_warmup(info["warmup"])
    for p in info["provider_pauses"]:
        out.print(
            f"provider paused: {escape(p['provider'])} until {p['until']}: {escape(p['reason'])}",
            highlight=False,
            soft_wrap=True,
        )


def _print_warmup(w: dict[str, Any] | None) -> None:
    """The warm-up line of ``digest status``; nothing when warm-up is off."""
    if w is None:
        return
    if w["done"]:
        over = f"warm-up: the {w['days']}-day schedule from {w['start_date']} is over; no daily cap"
        out.print(over, highlight=False)
        return
    out.print(
        f"warm-up: day {w['day']} of {w['days']} ({w['date']}, {w['timezone']}): today's cap {w['cap']:,}, "
        f"used {w['used']:,}, left {w['left']:,}",
        highlight=False,
    )


def _feeds_table(feeds: list[dict[str, object]]) -> None:
    table = Table(
        "id",
        "url",
        "category",
        "every",
        "status",
        "failures",
        "last poll",
        "next poll",
        "error",
        box=None,
        title="feeds",
        title_justify="left",
    )
    for f in feeds:
        table.add_row(
            str(f["id"]),
            escape(str(f["url"])),
            escape(str(f["category"] or "")),
            f"{f['every_seconds']}s",
            str(f["status"]),
            str(f["failures"]),
            _when(f["last_polled_at"]),  # type: ignore[arg-type]
            _when(f["next_poll_at"]),  # type: ignore[arg-type]
            escape(str(f["last_error"] or "")),
        )
    # A feed URL is copied whole into a browser or `feeds remove`: each row is one line,
    # nothing cut to "https://…" or folded; a terminal narrower than a row wraps it.
    print_unwrapped(table)


@feeds_app.command("add")
def feeds_add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The feed's http(s) URL.")],
    category: Annotated[str, typer.Option(help="Category for entries that have none.")] = "",
    every: Annotated[
        str | None, typer.Option(help="Polling interval, e.g. 15m (default: service.feed_every setting).")
    ] = None,
) -> None:
    """Add a feed; the service polls it right away, then on its interval."""
    from digest.ingest.feeds import add_feed
    from digest.store.db import session_scope

    st = state(ctx)
    try:
        interval = parse_duration(every) if every is not None else st.settings.service.feed_every
    except ValueError as exc:
        raise InputError("--every", str(exc)) from None
    with session_scope(st.engine) as session:
        feed = add_feed(session, url, st.clock.now(), category=category, every=interval)
        out.print(f"added feed {feed.id}: {escape(mask_url(feed.url))} every {feed.every_seconds}s")


@feeds_app.command("list")
def feeds_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List the feeds with the status of their last poll (whole URLs; passwords masked)."""
    from digest.app.status import feed_row
    from digest.ingest.feeds import list_feeds
    from digest.store.db import session_scope

    with session_scope(state(ctx, reads_only=True).engine) as session:
        feeds = [feed_row(f) for f in list_feeds(session)]
    if as_json:
        for f in feeds:
            print_json_line(f)
        return
    _feeds_table(feeds)  # type: ignore[arg-type]
    out.print(f"{len(feeds)} feed(s)")


@feeds_app.command("remove")
def feeds_remove(ctx: typer.Context, feed: Annotated[str, typer.Argument(help="The feed's URL or id.")]) -> None:
    """Stop polling a feed (its articles stay)."""
    from digest.ingest.feeds import remove_feed
    from digest.store.db import session_scope

    with session_scope(state(ctx).engine) as session:
        removed = remove_feed(session, feed)
    out.print(f"removed feed {removed.id}: {escape(mask_url(removed.url))}")
