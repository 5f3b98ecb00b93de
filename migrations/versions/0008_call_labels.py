"""Label a call in one step: every description a call record's codes had at call time.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Issue 19 item 4. ``call_labels_at(source, vdn_id, obs_code, result_code, busi_result,
sub_status, at)`` returns **exactly one row** for any arguments (a SELECT without FROM, one
scalar subquery per description): the OBS description (``result_code_history``), the
display label (``display_result_history`` by the display code the call carries; when two
display results share that code at that instant, the one with the lowest ``def_id``, as
0007's ``display_result_at``), the business result's name (``business_result_history``,
``parent_code = ''``) and the sub-status's name (``parent_code`` = the call's business
result). ``NULL`` where the list had no such code at that instant, or the argument is
``NULL``. So ``CROSS JOIN LATERAL call_labels_at(...)`` never drops or duplicates a call.

Codes are compared exactly as text: a failCode sent as ``"0"`` is not ``"00000"`` (its OBS
description is ``NULL``); docs/bi.md shows how to map it explicitly.

``LANGUAGE sql STABLE`` with one SELECT (no SECURITY DEFINER, SET, STRICT): PostgreSQL
inlines it, and each description is one index lookup per call on the history's unique
``(source, vdn_id, <key>, valid_from)`` index (``display_result_history``'s
``(source, vdn_id, result_code, valid_from)``). For millions of calls, docs/bi.md's
set-based query is the faster shape (bench/labels.py measures both).

Downgrade drops the function.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE FUNCTION {s}.call_labels_at(source text, vdn_id integer, obs_code text,
                                   result_code text, busi_result text, sub_status text,
                                   at timestamptz)
RETURNS TABLE (obs_code_desc text, display_result text, business_result_name text,
               sub_status_name text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT
        (SELECT h.obs_code_desc FROM {s}.result_code_history AS h
         WHERE h.source = $1 AND h.vdn_id = $2 AND h.obs_code = $3 AND h.valid_from <= $7
           AND (h.valid_to IS NULL OR $7 < h.valid_to)
         ORDER BY h.valid_from DESC LIMIT 1),
        (SELECT d.display_result FROM {s}.display_result_history AS d
         WHERE d.source = $1 AND d.vdn_id = $2 AND d.result_code = $4 AND d.valid_from <= $7
           AND (d.valid_to IS NULL OR $7 < d.valid_to)
         ORDER BY d.valid_from DESC, d.def_id LIMIT 1),
        (SELECT b.name FROM {s}.business_result_history AS b
         WHERE b.source = $1 AND b.vdn_id = $2 AND b.parent_code = '' AND b.code = $5
           AND b.valid_from <= $7 AND (b.valid_to IS NULL OR $7 < b.valid_to)
         ORDER BY b.valid_from DESC LIMIT 1),
        (SELECT b.name FROM {s}.business_result_history AS b
         WHERE b.source = $1 AND b.vdn_id = $2 AND b.parent_code = $5 AND b.code = $6
           AND b.valid_from <= $7 AND (b.valid_to IS NULL OR $7 < b.valid_to)
         ORDER BY b.valid_from DESC LIMIT 1)
$$
;;
COMMENT ON FUNCTION {s}.call_labels_at(text, integer, text, text, text, text, timestamptz) IS
    'obs-sync: every description a call''s codes had at instant at, exactly one row for any '
    'arguments (NULL where the list had no such code then, or the argument is NULL): '
    'obs_code_desc (OBS result code = failCode), display_result (display code = resultCode; '
    'lowest def_id if two share it), business_result_name (busiResult), sub_status_name '
    '(subStatus under busiResult). Codes compared exactly as text: failCode ''0'' is not '
    '''00000''. Inlined: one index lookup per description and call (docs/bi.md)'
"""

DOWNGRADE = """
DROP FUNCTION {s}.call_labels_at(text, integer, text, text, text, text, timestamptz)
"""


def _schema() -> str:
    context = op.get_context()
    schema = context.version_table_schema
    assert schema, "obs-sync always sets the schema (migrations/env.py)"
    return context.dialect.identifier_preparer.quote_identifier(schema)


def _run(script: str, s: str) -> None:
    for statement in script.split("\n;;\n"):
        if statement.strip():
            op.execute(statement.replace("{s}", s))


def upgrade() -> None:
    _run(UPGRADE, _schema())


def downgrade() -> None:
    _run(DOWNGRADE, _schema())
