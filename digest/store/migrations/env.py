from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import digest.store.models  # noqa: F401  (registers the tables)

config = context.config
engine = config.attributes["engine"]
target_metadata = SQLModel.metadata

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
