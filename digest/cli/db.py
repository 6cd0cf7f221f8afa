"""``digest db``: the database schema."""

from __future__ import annotations

import typer

from digest.cli.base import app, out, state

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


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
