"""Typo detection at birth: for the keys a load just derived (or quarantined), the existing rows each one probably
means.

Set-based in PostgreSQL, in the load's transaction, on the new rows as ``insert_derived`` left them (their derived
names and parent key). Candidates are found three ways, then scored together:

- **similar key**, across the whole table: every key one typo away — a character too many (``1P0290`` → ``P0290``, a
  doubled digit), two neighbours swapped, a wrong digit, a digit dropped, quotes or words around it (``'P0290'``,
  ``P0290 备注`` → ``P0290``: a key a load set aside) — looked up by primary key (a few hundred variants per key, one
  hash or index join however many keys);
- **siblings**: rows with the same parent (a portfolio's 年金计划号) whose key is within ``max_key_distance``
  (levenshtein, ``fuzzystrmatch``) or whose name is similar;
- **similar name**, across the whole table where ``search_names`` is set: ``pg_trgm``'s ``%`` through the trigram
  index of each name column.

score = key_weight × key similarity + (1 − key_weight) × name similarity. Key similarity: 1 − typos / length (typos:
1 for the variants above, a swap included; else the levenshtein distance), 0 beyond ``max_key_distance`` unless a
variant, halved when the two rows have different parents (``siblings``). Name similarity: the best name column; 0.5
when either row has no name. The ``per_key`` best candidates scoring at least ``min_score`` are kept in
``KeySuggestion`` with their evidence. No new key, no query.
"""

from __future__ import annotations

from django.db.backends.utils import CursorWrapper
from psycopg import sql

from pipeline.bulk import planner_setting
from pipeline.config.schema import Suggestions, SuggestionTable
from pipeline.models import KeySuggestion
from reference.registry import ReferenceTable, get_table
from refgov.db.sql import ident

NEUTRAL_NAME = 0.5  # the name's share of the score when either row has no name to compare
OTHER_PARENT = 0.5  # a similar key under another parent (a portfolio of another plan) counts half

# Keys one typo away from a new key ``k`` (character positions ``i``, one past the end included): the variant, and
# what the new key did wrong.
VARIANTS = """
WITH pos AS (
    SELECT n.k, i, substr(n.k, i, 1) AS ch, length(n.k) AS len
    FROM _suggest_new n, generate_series(1, length(n.k) + 1) i
), digits AS (SELECT unnest('{0,1,2,3,4,5,6,7,8,9}'::text[]) AS d)
SELECT k, overlay(k PLACING '' FROM i FOR 1) AS v, 'extra' AS edit FROM pos WHERE i <= len
UNION ALL
SELECT k, overlay(k PLACING substr(k, i + 1, 1) || ch FROM i FOR 2), 'swapped' FROM pos
WHERE i < len AND ch <> substr(k, i + 1, 1)
UNION ALL
SELECT k, overlay(k PLACING d FROM i FOR 1), 'wrong_digit' FROM pos, digits WHERE ch ~ '^[0-9]$' AND d <> ch
UNION ALL
SELECT k, overlay(k PLACING d FROM i FOR 0), 'missing_digit' FROM pos, digits
WHERE ch ~ '^[0-9]$' OR substr(k, i - 1, 1) ~ '^[0-9]$'
UNION ALL
SELECT k, substring(k FROM '[[:alnum:]_.-]+'), 'unquoted' FROM _suggest_new
WHERE substring(k FROM '[[:alnum:]_.-]+') <> k
"""


def suggest_for_new_keys(
    cur: CursorWrapper, *, table: str, keys: list[str], batch_id: int | None, settings: Suggestions
) -> int:
    """Rank the existing rows each of ``keys`` (rows of ``table`` just derived) probably means; store the kept ones
    in ``KeySuggestion`` (replacing earlier suggestions for these keys). Returns how many were stored."""
    per_table = settings.tables.get(table)
    if not keys or not settings.enabled or per_table is None:
        return 0
    reference = get_table(table)
    _stage_new(cur, reference, keys, per_table.names, per_table.siblings)
    return _suggest_staged(cur, reference, per_table, settings, batch_id)


def suggest_for_fact_keys(
    cur: CursorWrapper,
    *,
    table: str,
    relation: str,
    key_column: str,
    name_columns: dict[str, str],
    parent_column: str | None,
    batch_id: int | None,
    settings: Suggestions,
) -> int:
    """As ``suggest_for_new_keys``, for keys ``table`` does not have (rows a load set aside): the keys are the
    values of ``key_column`` of the rows of the temporary table ``relation``; a key's name columns and parent are the
    most frequent values of the fact columns that would derive them (``name_columns``: name column → fact column;
    ``parent_column``: the fact column of the ``siblings`` column). Returns how many suggestions were stored."""
    per_table = settings.tables.get(table)
    if not settings.enabled or per_table is None:
        return 0
    columns: list[sql.Composable] = [sql.SQL("r.{} AS k").format(ident(key_column))]
    columns += [
        sql.SQL("mode() WITHIN GROUP (ORDER BY r.{}::text) AS {}").format(ident(name_columns[name]), ident(f"n{i}"))
        if name in name_columns
        else sql.SQL("NULL::text AS {}").format(ident(f"n{i}"))
        for i, name in enumerate(per_table.names)
    ]
    columns.append(
        sql.SQL("mode() WITHIN GROUP (ORDER BY r.{}::text) AS parent").format(ident(parent_column))
        if per_table.siblings and parent_column
        else sql.SQL("NULL::text AS parent")
    )
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE _suggest_new ON COMMIT DROP AS SELECT {} FROM {} r WHERE r.{} IS NOT NULL GROUP BY 1"
        ).format(sql.SQL(", ").join(columns), sql.Identifier(relation), ident(key_column))
    )
    if not cur.rowcount:
        cur.execute("DROP TABLE _suggest_new")
        return 0
    cur.execute("ANALYZE _suggest_new")
    return _suggest_staged(cur, get_table(table), per_table, settings, batch_id)


def _suggest_staged(
    cur: CursorWrapper,
    reference: ReferenceTable,
    per_table: SuggestionTable,
    settings: Suggestions,
    batch_id: int | None,
) -> int:
    """Candidates and scores for the keys staged in ``_suggest_new``; stored in ``KeySuggestion``."""
    names = per_table.names
    cur.execute("CREATE TEMP TABLE _suggest_pairs (k text, c text, found_by text, edit text) ON COMMIT DROP")
    _by_key(cur, reference)
    if per_table.siblings:
        _by_siblings(cur, reference, names, per_table.siblings, settings)
    if per_table.search_names:
        _by_names(cur, reference, names, settings)
    stored = _store(cur, reference, per_table, settings, batch_id)
    cur.execute("DROP TABLE _suggest_pairs, _suggest_new")
    return stored


def _stage_new(
    cur: CursorWrapper, reference: ReferenceTable, keys: list[str], names: list[str], siblings: str | None
) -> None:
    """The new rows' key, names and parent as ``_suggest_new (k, n0, n1, …, parent)``."""
    columns: list[sql.Composable] = [sql.SQL("t.{} AS k").format(ident(reference.key_column))]
    columns += [sql.SQL("t.{} AS {}").format(ident(name), ident(f"n{i}")) for i, name in enumerate(names)]
    columns.append(sql.SQL("t.{} AS parent").format(ident(siblings)) if siblings else sql.SQL("NULL::text AS parent"))
    cur.execute(
        sql.SQL("CREATE TEMP TABLE _suggest_new ON COMMIT DROP AS SELECT {} FROM {} t WHERE t.{} = ANY(%s)").format(
            sql.SQL(", ").join(columns), ident(reference.name), ident(reference.key_column)
        ),
        [keys],
    )
    cur.execute("ANALYZE _suggest_new")


def _by_key(cur: CursorWrapper, reference: ReferenceTable) -> None:
    cur.execute(
        sql.SQL(
            """
            INSERT INTO _suggest_pairs
            SELECT DISTINCT ON (v.k, t.{key}) v.k, t.{key}, 'key', v.edit
            FROM ({variants}) v JOIN {table} t ON t.{key} = v.v
            WHERE NOT EXISTS (SELECT FROM _suggest_new n WHERE n.k = t.{key})
            ORDER BY v.k, t.{key}, v.edit
            """
        ).format(variants=sql.SQL(VARIANTS), table=ident(reference.name), key=ident(reference.key_column))
    )


def _similar_names(names: list[str], candidate: str, *, new: str = "n") -> sql.Composable:
    """OR of ``similarity(new name, candidate name) >= %(min_name)s`` over the name columns (FALSE without names)."""
    if not names:
        return sql.SQL("FALSE")
    return sql.SQL(" OR ").join(
        sql.SQL("similarity({new}.{alias}, {c}.{column}) >= %(min_name)s").format(
            new=sql.Identifier(new), alias=ident(f"n{i}"), c=sql.Identifier(candidate), column=ident(name)
        )
        for i, name in enumerate(names)
    )


def _by_siblings(
    cur: CursorWrapper, reference: ReferenceTable, names: list[str], siblings: str, settings: Suggestions
) -> None:
    cur.execute(
        sql.SQL(
            """
            INSERT INTO _suggest_pairs
            SELECT n.k, t.{key}, 'sibling', NULL
            FROM _suggest_new n JOIN {table} t ON t.{parent} = n.parent
            WHERE t.{key} <> n.k AND NOT EXISTS (SELECT FROM _suggest_new o WHERE o.k = t.{key})
              AND (levenshtein(n.k, t.{key}) <= %(distance)s OR {similar})
            """
        ).format(
            table=ident(reference.name),
            key=ident(reference.key_column),
            parent=ident(siblings),
            similar=_similar_names(names, "t"),
        ),
        {"distance": settings.max_key_distance, "min_name": settings.min_name_similarity},
    )


def name_search_threshold(settings: Suggestions) -> float:
    """The name similarity a candidate found by its name alone needs to reach ``min_score`` (at least
    ``min_name_similarity``): looking for less similar names would only find candidates that are dropped, and a
    higher threshold lets the trigram index skip most of its entries."""
    name_weight = 1 - settings.key_weight
    if name_weight <= 0:
        return 2.0
    return max(settings.min_name_similarity, settings.min_score / name_weight)


def _by_names(cur: CursorWrapper, reference: ReferenceTable, names: list[str], settings: Suggestions) -> None:
    """Per name column, the most similar names through its trigram index (``%`` at ``name_search_threshold``)."""
    threshold = name_search_threshold(settings)
    if threshold > 1:
        return
    cur.execute("SELECT set_config('pg_trgm.similarity_threshold', %s, true)", [str(threshold)])
    flush_pending_index_entries(cur, reference.name)
    # Through the trigram index even for a small table: a sequential scan computes every row's trigrams again for
    # each new key (~3 ms a key for 1,500 rows, 2.4× the index's cost), which the planner does not count.
    with planner_setting(cur, "enable_seqscan", "off"):
        for i, name in enumerate(names):
            _names_like(cur, reference, name, i, settings.per_key)


def flush_pending_index_entries(cur: CursorWrapper, table: str) -> int:
    """Move the entries waiting in the pending lists of ``table``'s GIN (trigram) indexes into the indexes, as VACUUM
    would: the rows a load just derived wait there, and every lookup reads through them. Only the indexes this role
    owns (the others are read through as they are); returns how many were flushed."""
    cur.execute(
        "SELECT count(gin_clean_pending_list(i.indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = to_regclass(%s) AND a.amname = 'gin' "
        "AND pg_has_role(c.relowner, 'USAGE')",
        [sql.Identifier(get_table(table).name).as_string(cur.connection)],
    )
    flushed: int = cur.fetchone()[0]
    return flushed


def _names_like(cur: CursorWrapper, reference: ReferenceTable, name: str, i: int, per_key: int) -> None:
    """The ``per_key`` rows whose name column ``name`` is most similar to each new key's name ``n<i>``."""
    cur.execute(
        sql.SQL(
            """
            INSERT INTO _suggest_pairs
            SELECT n.k, m.k, 'name', NULL FROM _suggest_new n CROSS JOIN LATERAL (
                SELECT t.{key} AS k FROM {table} t
                WHERE t.{column} %% n.{alias} AND t.{key} <> n.k
                  AND NOT EXISTS (SELECT FROM _suggest_new o WHERE o.k = t.{key})
                ORDER BY similarity(t.{column}, n.{alias}) DESC, t.{key} LIMIT %s
            ) m WHERE n.{alias} IS NOT NULL
            """
        ).format(
            table=ident(reference.name), key=ident(reference.key_column), column=ident(name), alias=ident(f"n{i}")
        ),
        [per_key],
    )


def _store(
    cur: CursorWrapper,
    reference: ReferenceTable,
    per_table: SuggestionTable,
    settings: Suggestions,
    batch_id: int | None,
) -> int:
    names = per_table.names
    similarities = [
        sql.SQL("similarity(n.{alias}, t.{column})").format(alias=ident(f"n{i}"), column=ident(name))
        for i, name in enumerate(names)
    ]
    best_name = sql.SQL("GREATEST({})").format(sql.SQL(", ").join(similarities)) if names else sql.SQL("NULL::real")
    name_evidence = (
        sql.SQL("jsonb_strip_nulls(jsonb_build_object({}))").format(
            sql.SQL(", ").join(
                sql.SQL("{}::text, round(({})::numeric, 3)").format(sql.Literal(name), similarity)
                for name, similarity in zip(names, similarities, strict=True)
            )
        )
        if names
        else sql.SQL("'{}'::jsonb")
    )
    suggestion = sql.Identifier(KeySuggestion._meta.db_table)
    column = {f.name: sql.Identifier(f.column) for f in KeySuggestion._meta.concrete_fields}
    cur.execute(
        sql.SQL("DELETE FROM {} WHERE {} = %s AND {} IN (SELECT k FROM _suggest_new)").format(
            suggestion, column["table"], column["key"]
        ),
        [reference.name],
    )
    cur.execute(
        sql.SQL(
            """
            WITH pairs AS (
                SELECT k, c, array_agg(DISTINCT found_by ORDER BY found_by) AS found_by,
                       min(edit) AS edit
                FROM _suggest_pairs GROUP BY k, c
            ), measured AS (
                SELECT p.*, levenshtein(p.k, p.c) AS distance, greatest(length(p.k), length(p.c)) AS len,
                       CASE WHEN p.edit IS NULL THEN levenshtein(p.k, p.c) ELSE 1 END AS typos,
                       {best_name} AS name_similarity, {name_evidence} AS names,
                       translate(p.k, %(digits)s, %(nines)s) = translate(p.c, %(digits)s, %(nines)s) AS same_shape,
                       substring(p.k FROM '^[^0-9]*') = substring(p.c FROM '^[^0-9]*') AS same_prefix,
                       {same_parent} AS same_parent
                FROM pairs p JOIN _suggest_new n ON n.k = p.k JOIN {table} t ON t.{key} = p.c
            ), scored AS (
                SELECT m.*,
                       %(key_weight)s
                         * CASE WHEN distance <= %(distance)s OR edit IS NOT NULL
                                THEN 1 - typos::float8 / len ELSE 0 END
                         * CASE WHEN same_parent IS FALSE THEN %(other_parent)s ELSE 1 END
                       + (1 - %(key_weight)s) * coalesce(name_similarity, %(neutral)s) AS score
                FROM measured m
            ), ranked AS (
                SELECT s.*, row_number() OVER (
                    PARTITION BY k ORDER BY score DESC, same_shape DESC, distance, c
                ) AS rank
                FROM scored s WHERE score >= %(min_score)s
            )
            INSERT INTO {suggestion} ({table_col}, {key_col}, {candidate}, {rank}, {score}, {key_distance},
                                      {name_similarity}, {evidence}, {batch}, {created_at})
            SELECT %(table)s, k, c, rank, round(score::numeric, 3),
                   CASE WHEN distance <= %(distance)s THEN distance END, round(name_similarity::numeric, 3),
                   jsonb_build_object(
                       'found_by', to_jsonb(found_by),
                       'key', jsonb_strip_nulls(jsonb_build_object(
                           'distance', distance, 'edit', edit, 'same_shape', same_shape, 'same_prefix', same_prefix,
                           'same_parent', same_parent
                       )),
                       'names', names
                   ),
                   %(batch)s, now()
            FROM ranked WHERE rank <= %(per_key)s
            """
        ).format(
            best_name=best_name,
            name_evidence=name_evidence,
            same_parent=sql.SQL("n.parent = t.{}").format(ident(per_table.siblings))
            if per_table.siblings
            else sql.SQL("NULL::boolean"),
            table=ident(reference.name),
            key=ident(reference.key_column),
            suggestion=suggestion,
            table_col=column["table"],
            key_col=column["key"],
            candidate=column["candidate"],
            rank=column["rank"],
            score=column["score"],
            key_distance=column["key_distance"],
            name_similarity=column["name_similarity"],
            evidence=column["evidence"],
            batch=column["batch"],
            created_at=column["created_at"],
        ),
        {
            "digits": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "nines": "9999999999AAAAAAAAAAAAAAAAAAAAAAAAAA",
            "key_weight": settings.key_weight,
            "distance": settings.max_key_distance,
            "neutral": NEUTRAL_NAME,
            "other_parent": OTHER_PARENT,
            "min_score": settings.min_score,
            "per_key": settings.per_key,
            "table": reference.name,
            "batch": batch_id,
        },
    )
    stored: int = cur.rowcount
    return stored
