"""Many rows into one table at the driver's own speed: PostgreSQL ``COPY``, SQLite ``executemany``.

SQLAlchemy's executemany runs each value of each row through its type's bind
processor in Python, which costs more than the database's work for an import of a
million rows. Here each column's processor runs once per distinct value (a
subscriber list repeats few timezones, topic lists and timestamps) and the rows go
to the driver as plain tuples. Errors come back as SQLAlchemy's, like any statement's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

# A column whose values repeat this much is remembered value by value (the others are few and small).
_MEMO_SIZE = 10_000


def rows_in(conn: Connection, sql: str, values: Sequence[Any]) -> Any:
    """The rows of ``sql`` (plain SQL whose ``{in}`` stands for ``IN`` the list ``values``).

    One parameter (an array) on PostgreSQL, one per value on SQLite; without
    SQLAlchemy's per-value expansion, which costs more than the query.
    """
    if conn.dialect.name == "postgresql":
        return conn.exec_driver_sql(sql.replace("{in}", "= ANY(%s)"), (list(values),))
    return conn.exec_driver_sql(sql.replace("{in}", f"IN ({', '.join('?' for _ in values)})"), tuple(values))


class RowEncoder:
    """Encodes rows of ``columns`` of ``table`` as the connection's driver takes them.

    With ``copy`` the JSON columns become JSON text (what ``COPY`` reads), else what
    SQLAlchemy's own bind processors give.
    """

    def __init__(self, conn: Connection, table: Table, columns: Sequence[str], *, copy: bool = False) -> None:
        dialect = conn.dialect
        self._columns = list(columns)
        self._procs: list[Callable[[Any], Any] | None] = []
        for name in columns:
            type_ = table.c[name].type
            proc: Callable[[Any], Any] | None
            if copy and isinstance(type_, JSON):
                proc = json.dumps
            else:
                proc = type_.dialect_impl(dialect).bind_processor(dialect)
            self._procs.append(proc)
        # Only the columns with a processor are touched, each with its memo of encoded values.
        self._active: list[tuple[int, Callable[[Any], Any], dict[Any, Any]]] = [
            (i, proc, {}) for i, proc in enumerate(self._procs) if proc is not None
        ]

    def value(self, column: str, value: Any) -> Any:
        """One value of ``column`` encoded (for a caller that encodes each distinct value once itself)."""
        proc = self._procs[self._columns.index(column)]
        return value if proc is None or value is None else proc(value)

    def encode(self, values: Sequence[Any]) -> tuple[Any, ...]:
        if not self._active:
            return tuple(values)
        out = list(values)
        for i, proc, memo in self._active:
            value = out[i]
            if value is None:
                continue
            key = tuple(value) if type(value) is list else value
            try:
                out[i] = memo[key]
            except KeyError:
                out[i] = encoded = proc(value)
                if len(memo) < _MEMO_SIZE:
                    memo[key] = encoded
            except TypeError:  # unhashable: not remembered
                out[i] = proc(value)
        return tuple(out)


def insert_encoder(conn: Connection, table: Table, columns: Sequence[str]) -> RowEncoder:
    """The :class:`RowEncoder` of :func:`insert_rows` (``COPY``'s on PostgreSQL), for rows given ``encoded``."""
    return RowEncoder(conn, table, columns, copy=conn.dialect.name == "postgresql")


def insert_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, encoded: bool = False
) -> None:
    """INSERT ``rows`` (values of ``columns``, in order) into ``table``, in the caller's transaction.

    ``encoded``: the rows are tuples of values already as the driver takes them (see :func:`insert_encoder`).
    """
    names = ", ".join(f'"{c}"' for c in columns)
    if not encoded:
        rows = map(insert_encoder(conn, table, columns).encode, rows)
    if conn.dialect.name == "postgresql":
        types = _binary_types(conn, table, columns)
        sql = f'COPY "{table.name}" ({names}) FROM STDIN' + (" (FORMAT BINARY)" if types else "")
        cursor = conn.connection.cursor()
        try:
            with cursor.copy(sql) as copy:  # type: ignore[attr-defined]
                if types:
                    copy.set_types(types)
                write = copy.write_row
                for row in rows:
                    write(row)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect) from None
        finally:
            cursor.close()
        return
    marks = ", ".join("?" for _ in columns)
    values = list(rows)
    if values:
        conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})', values)


# The binary form of COPY each column type takes, by its DDL name (a JSON column's is its
# text). A third of the client's time of the text form, and less of the server's.
_BINARY = {
    "VARCHAR": "text", "TEXT": "text", "JSON": "text", "INTEGER": "int4", "BIGINT": "int8", "SMALLINT": "int2",
    "BOOLEAN": "bool", "TIMESTAMP WITH TIME ZONE": "timestamptz", "TIMESTAMP WITHOUT TIME ZONE": "timestamp",
}  # fmt: skip


def _binary_types(conn: Connection, table: Table, columns: Sequence[str]) -> list[str] | None:
    """The types of a binary ``COPY`` of ``columns``; None when one is not in :data:`_BINARY` (text ``COPY``)."""
    types = []
    for name in columns:
        ddl = table.c[name].type.compile(dialect=conn.dialect).partition("(")[0]
        if ddl not in _BINARY:
            return None
        types.append(_BINARY[ddl])
    return types
