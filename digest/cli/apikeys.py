"""``digest apikeys``: keys of the REST API (make one, list them, revoke one)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from digest.cli.base import JSON_HELP, app, err, out, print_rows, state

apikeys_app = typer.Typer(help="Keys of the REST API (/api/v1).", no_args_is_help=True)
app.add_typer(apikeys_app, name="apikeys")


@apikeys_app.command("create")
def apikeys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the key, e.g. the system that uses it.")],
    scope: Annotated[
        str, typer.Option("--scope", help="Comma-separated: articles:write, subscribers:write, read.")
    ] = "read",
) -> None:
    """Make a key and print it, once: only its hash is stored (a lost key is revoked and made anew)."""
    from digest.app.apikeys import create_key

    st = state(ctx)
    made = create_key(st.engine, st.clock, name, scope)
    # The key alone on stdout (for a script to capture); what it is goes to stderr.
    out.print(made.key, highlight=False, soft_wrap=True, markup=False)
    err.print(
        f"created API key {escape(made.name)} ({made.prefix}) with scopes {', '.join(made.scopes)}; "
        "store it now: it is not shown again",
        highlight=False,
        soft_wrap=True,
    )


@apikeys_app.command("list")
def apikeys_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List the keys (never the keys themselves: their names, prefixes, scopes and use)."""
    from digest.app.apikeys import list_keys

    rows = list_keys(state(ctx, reads_only=True).engine)

    def when(value: object) -> str:
        return f"{value:%Y-%m-%d %H:%M}" if value is not None else ""

    print_rows(
        rows,
        as_json,
        {"key_hash", "rate_window", "rate_count"},
        ("name", "prefix", "scopes", "created (UTC)", "last used", "revoked"),
        lambda k: (escape(k.name), k.prefix, k.scopes, when(k.created_at), when(k.last_used_at), when(k.revoked_at)),
        "API key",
    )


@apikeys_app.command("revoke")
def apikeys_revoke(ctx: typer.Context, name: str) -> None:
    """Revoke a key: refused (401) from the next request on, in every process."""
    from digest.app.apikeys import revoke_key

    st = state(ctx)
    row = revoke_key(st.engine, st.clock, name)
    out.print(f"revoked API key {escape(row.name)} ({row.prefix})", highlight=False)
