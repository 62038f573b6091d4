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
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Boolean, Connection
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

from railcar.server.models import UtcDateTime

# Values SQLite takes as they are: most parameters, so they skip :func:`_convert`.
_AS_IS = frozenset({str, int, float, bytes, type(None)})


@lru_cache(maxsize=64)  # a request binds its "now" several times
def _datetime_text(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    # SQLAlchemy's SQLite DATETIME storage format, which UtcDateTime columns are stored in
    # (YYYY-MM-DD HH:MM:SS.ffffff), at half the cost of strftime
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _convert(value: Any) -> Any:
    if isinstance(value, datetime):
        return _datetime_text(value)
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
    # SQLAlchemy's merge of the caller's values with the statement's own (its literals), done
    # once: each bind parameter's value by name when the caller gives none (None when the
    # statement has escaped names, a callable default or a required parameter renamed: then
    # SQLAlchemy merges on every call), the keys a caller must give, and the keys of parameters
    # whose name differs from their key (anonymous literals), which the caller must not give.
    defaults: dict[str, Any] | None
    required: frozenset[str]
    renamed: frozenset[str]


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
        if (
            prepared.defaults is not None
            and prepared.required <= params.keys()
            and prepared.renamed.isdisjoint(params)
        ):
            values: Mapping[str, Any] = {**prepared.defaults, **params}
        else:  # SQLAlchemy's own merge, and its error for a missing value
            values = prepared.compiled.construct_params(dict(params))
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(
            prepared.sql,
            [
                v if type(v) in _AS_IS else _convert(v)
                for v in map(values.__getitem__, prepared.names)
            ],
        )
        return cursor

    def _prepare_sqlite(self, conn: Connection) -> _Sqlite:
        if self._sqlite is None:
            compiled = self.statement.compile(dialect=conn.dialect)  # type: ignore[attr-defined]
            assert isinstance(compiled, SQLCompiler)
            names = compiled.positiontup or []
            binds = compiled.bind_names.items()
            renamed = frozenset(b.key for b, name in binds if name != b.key)
            mergeable = not compiled.escaped_bind_names and not any(
                (b.required and name != b.key) or b.callable is not None for b, name in binds
            )
            self._sqlite = _Sqlite(
                str(compiled),
                names,
                compiled,
                _row_maker(self.statement),
                dict(compiled.construct_params(_check=False)) if mergeable else None,
                frozenset(b.key for b, _ in binds if b.required),
                renamed,
            )
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
    convert = [(i, c) for i, c in enumerate(converters) if c is not None]

    def make(raw: Sequence[Any]) -> Any:
        if len(raw) != len(keys):
            raise ValueError(f"row of {len(raw)} columns, expected {len(keys)}")
        values = list(raw)
        for i, c in convert:
            values[i] = c(values[i])
        return row_type._make(values)

    return make
