"""``digest db``: the database schema."""

from __future__ import annotations

import typer
from sqlalchemy.engine import Engine

from digest.cli.base import State, app, out, state

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _engine(st: State) -> Engine:
    """An engine without migrating: these commands manage the schema themselves."""
    from digest.store.db import make_engine

    return make_engine(st.settings.database_url, **st.store_options())


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the schema migrations (creates the store if it does not exist)."""
    from digest.store.db import current_revision, redact, upgrade

    st = state(ctx)
    engine = _engine(st)
    upgrade(engine, revision)
    out.print(f"database {redact(st.settings.database_url)} at revision {current_revision(engine)}")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the schema revision of the database."""
    from digest.store.db import current_revision

    out.print(current_revision(_engine(state(ctx))) or "empty")
