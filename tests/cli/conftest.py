"""The CLI fixtures of ``test_cli`` (a subprocess ``run``, the CLI's SQLite ``store``, seeded
data), shared with the other CLI test modules."""

from tests.cli.test_cli import cli_env, db_path, ready, run, store  # noqa: F401
