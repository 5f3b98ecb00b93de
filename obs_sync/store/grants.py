"""``obs-sync db grant-reader ROLE``: read-only access to the BI tables for a BI tool's role."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text

from obs_sync.errors import ObsSyncError
from obs_sync.store.tables import TABLE_NAMES

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

_LISTS = ("display_result", "display_result_obs_code", "business_result")  # migration 0007
BI_RELATIONS = (
    *TABLE_NAMES,
    "result_code_current",
    "result_code_change",
    *(f"{t}{suffix}" for t in _LISTS for suffix in ("", "_history", "_current", "_change")),
    "code_list_state",
    "sync_run_code_list",
)
"""Tables and views a reader may SELECT (the views come from migrations 0002 and 0007)."""
BI_FUNCTIONS = (
    "result_code_desc_at(integer, text, timestamptz)",
    "result_code_desc_at(text, bigint, text, timestamptz)",  # migration 0006
    "sole_source()",
    "display_result_at(text, integer, text, timestamptz)",  # migration 0007
    "display_result_of_obs_code_at(text, integer, text, timestamptz)",
    "business_result_at(text, integer, text, text, timestamptz)",
    "call_labels_at(text, integer, text, text, text, text, timestamptz)",  # migration 0008
)


class GrantError(ObsSyncError):
    """The grant cannot be made; the message says what to do."""


def validate_role(role: str) -> str:
    if not role or len(role.encode()) > 63:
        raise GrantError(f"role name {role!r} must be 1 to 63 bytes long")
    if "\x00" in role:
        raise GrantError("role name must not contain a NUL character")
    return role


def grant_reader(engine: Engine, schema: str, role: str) -> list[str]:
    """Grant ``role`` USAGE on ``schema``, SELECT on the BI tables and views, EXECUTE on
    the BI functions; tables added later are readable too.

    Returns the statements executed (one transaction). The role must exist already: we
    never create roles (that means choosing a password, which is the DBA's business).
    """
    validate_role(role)
    quote = engine.dialect.identifier_preparer.quote_identifier
    statements: list[str] = []
    with engine.begin() as connection:
        found = connection.execute(
            text("SELECT rolname FROM pg_roles WHERE rolname = :role"), {"role": role}
        ).scalar()
        if found is None:
            # The role exists under another case: created unquoted (folded to lower case)
            # or quoted with capitals ("Metabase").
            other = connection.execute(
                text("SELECT rolname FROM pg_roles WHERE lower(rolname) = lower(:role) LIMIT 1"),
                {"role": role},
            ).scalar()
            hint = (
                f" (did you mean {other!r}? role names are case-sensitive; SQL folds unquoted "
                "names to lower case)"
                if other
                else ""
            )
            raise GrantError(
                f"role {role!r} does not exist{hint}; create it first, e.g. "
                f"CREATE ROLE {quote(role)} LOGIN PASSWORD '...';"
            )
        missing = [
            table
            for table in BI_RELATIONS
            if connection.execute(
                text("SELECT to_regclass(:name)"), {"name": f"{quote(schema)}.{quote(table)}"}
            ).scalar()
            is None
        ]
        if missing:
            raise GrantError(
                f"tables/views {', '.join(missing)} do not exist in schema {schema!r} yet; "
                "run `obs-sync db upgrade` (or a first sync) first"
            )
        tables = ", ".join(f"{quote(schema)}.{quote(table)}" for table in BI_RELATIONS)
        statements = [
            f"GRANT USAGE ON SCHEMA {quote(schema)} TO {quote(role)}",
            f"GRANT SELECT ON {tables} TO {quote(role)}",
            *(
                f"GRANT EXECUTE ON FUNCTION {quote(schema)}.{function} TO {quote(role)}"
                for function in BI_FUNCTIONS
            ),
            # Tables a later migration adds to the schema become readable too (for tables
            # created by the role running this command, which is the one running migrations).
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {quote(schema)} GRANT SELECT ON TABLES "
            f"TO {quote(role)}",
        ]
        for statement in statements:
            connection.execute(text(statement))
    return statements
