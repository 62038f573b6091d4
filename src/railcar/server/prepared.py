"""Core statements compiled once and, on SQLite, run straight on the DBAPI cursor.

On the fast path (:mod:`railcar.server.fastpath`) SQLAlchemy's per-execution work (cache
key, parameter processing, result set-up) costs several times what SQLite takes to run the
statement. :class:`Prepared` compiles a statement once per dialect. On SQLite it binds the
parameters itself, with exactly the conversions the column types would apply (UTC datetimes
as naive ``YYYY-MM-DD HH:MM:SS.ffffff`` text, booleans as 0/1), and converts the result
columns back the same way. On any other database it hands the statement to SQLAlchemy
unchanged: there the round trip, not Python, is the cost.

The statement runs on the session's own connection, so it is part of the same transaction
as everything else in the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Boolean, Connection
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

from railcar.server.models import UtcDateTime

# SQLAlchemy's SQLite DATETIME storage format, which UtcDateTime columns are stored in.
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


def _bind(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).strftime(_SQLITE_DATETIME)
    if isinstance(value, bool):
        return int(value)
    return value


def _utc(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _boolean(value: int | None) -> bool | None:
    return None if value is None else bool(value)


class _Sqlite(NamedTuple):
    sql: str
    names: Sequence[str]
    compiled: SQLCompiler
    row: Callable[[Sequence[Any]], Any] | None


class Prepared:
    """One statement, compiled once per dialect."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._sqlite: _Sqlite | None = None

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Run a SELECT; rows allow attribute access by column name or label."""
        if conn.dialect.name != "sqlite":
            return list(conn.execute(self.statement, dict(params)).all())
        prepared = self._prepare_sqlite(conn)
        cursor = self._run_sqlite(conn, prepared, params)
        try:
            assert prepared.row is not None
            return [prepared.row(r) for r in cursor.fetchall()]
        finally:
            cursor.close()

    def run(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Run an INSERT/UPDATE."""
        if conn.dialect.name != "sqlite":
            conn.execute(self.statement, dict(params))
            return
        self._run_sqlite(conn, self._prepare_sqlite(conn), params).close()

    @staticmethod
    def _run_sqlite(conn: Connection, prepared: _Sqlite, params: Mapping[str, Any]) -> Any:
        values = prepared.compiled.construct_params(dict(params))
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(prepared.sql, [_bind(values[name]) for name in prepared.names])
        return cursor

    def _prepare_sqlite(self, conn: Connection) -> _Sqlite:
        if self._sqlite is None:
            compiled = self.statement.compile(dialect=conn.dialect)  # type: ignore[attr-defined]
            assert isinstance(compiled, SQLCompiler)
            names = compiled.positiontup or []
            self._sqlite = _Sqlite(str(compiled), names, compiled, _row_maker(self.statement))
        return self._sqlite


def _row_maker(statement: Executable) -> Callable[[Sequence[Any]], Any] | None:
    columns = getattr(statement, "selected_columns", None)
    if columns is None:
        return None
    keys = list(columns.keys())
    converters: list[Callable[[Any], Any] | None] = []
    for column in columns:
        if isinstance(column.type, UtcDateTime):
            converters.append(_utc)
        elif isinstance(column.type, Boolean):
            converters.append(_boolean)
        else:
            converters.append(None)
    row_type = NamedTuple("PreparedRow", [(k, Any) for k in keys])  # type: ignore[misc]

    def make(raw: Sequence[Any]) -> Any:
        return row_type(*(c(v) if c else v for c, v in zip(converters, raw, strict=True)))

    return make
