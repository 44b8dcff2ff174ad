"""The pghistory internals the reference history depends on (``reference.history``): these tests fail loudly when an
upgrade of pghistory changes them, instead of history being recorded without its context."""

from __future__ import annotations

import inspect
import json

import pghistory
import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from pghistory.models import Context
from psycopg import sql

from reference.history import PGHISTORY_SETTINGS, Action, change_context, row_history, stewardship_context
from reference.history_models import ReferenceEvent
from reference.models import ProductLine

pytestmark = pytest.mark.django_db


def settings_now() -> tuple[str | None, ...]:
    with connection.cursor() as cur:
        cur.execute("SELECT " + ", ".join("current_setting(%s, true)" for _ in PGHISTORY_SETTINGS), PGHISTORY_SETTINGS)
        return cur.fetchone()


def test_pghistory_still_installs_the_attach_function_the_trigger_calls():
    assert callable(Context.install_pgh_attach_context_func)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT p.pronargs, p.prorettype::regtype::text FROM pg_proc p WHERE p.proname = '_pgh_attach_context'"
        )
        assert cur.fetchall() == [(0, "uuid")]
        cur.execute("SELECT prosrc FROM pg_proc WHERE proname = 'refgov_history_event'")
        [(trigger_function,)] = cur.fetchall()
    assert "_pgh_attach_context()" in trigger_function
    assert all(f"current_setting('{name}', true)" in trigger_function for name in PGHISTORY_SETTINGS)


def test_pghistory_context_still_sets_the_settings_the_trigger_reads():
    assert "metadata" in inspect.signature(pghistory.context).parameters
    with transaction.atomic():
        with change_context(action=Action.EDIT, note="probe") as context_id:
            ProductLine.objects.create(code="PL1")  # a statement pghistory prefixes with its settings
            context_setting, metadata_setting = settings_now()
        assert context_setting == str(context_id)
        assert json.loads(metadata_setting) == {"action": "edit", "note": "probe"}
        assert settings_now() == ("", "")  # cleared when the context ends (reference.history)


def test_a_change_recorded_through_the_trigger_gets_its_context_and_metadata(django_user_model):
    user: User = django_user_model.objects.create_user(username="steward", password="pw")
    ProductLine.objects.create(code="PL1")
    with stewardship_context(user=user, action=Action.MERGE, table="产品线") as context_id:
        ProductLine.objects.filter(code="PL1").update(name="新名称")

    [event] = ReferenceEvent.objects.filter(table="产品线", key="PL1")
    assert event.context_id == context_id
    assert Context.objects.get(id=context_id).metadata == {
        "action": "merge",
        "table": "产品线",
        "user": user.pk,
        "username": "steward",
    }
    [shown] = row_history(table="产品线", key="PL1")
    assert (shown.action, shown.username) == (Action.MERGE, "steward")


def test_a_statement_composed_with_psycopg_sql_is_recorded_inside_a_context():
    ProductLine.objects.create(code="PL1")
    statement = sql.SQL("UPDATE {} SET {} = %s WHERE {} = %s").format(
        sql.Identifier("产品线"), sql.Identifier("产品线"), sql.Identifier("产品线代码")
    )
    with change_context(action=Action.IMPORT) as context_id:
        with connection.cursor() as cur:
            cur.execute(statement, ["新产品线", "PL1"])

    [event] = ReferenceEvent.objects.filter(table="产品线", key="PL1")
    assert event.context_id == context_id and event.after["产品线"] == "新产品线"


def test_nested_contexts_stay_one_unit_and_the_outer_one_clears_the_settings():
    with transaction.atomic():
        with change_context(action=Action.UNDO, undone_context="x") as outer:
            with change_context(action=Action.MERGE, table="产品线") as inner:
                ProductLine.objects.create(code="PL1")
            ProductLine.objects.filter(code="PL1").update(name="外层")
            assert settings_now()[0] == str(outer)
        assert settings_now() == ("", "")
    assert inner == outer
    assert set(ReferenceEvent.objects.values_list("context_id", flat=True)) == {outer}
    assert Context.objects.get(id=outer).metadata == {"action": "merge", "undone_context": "x", "table": "产品线"}


def test_action_values_are_the_strings_stored_in_the_metadata():
    assert [a.value for a in Action] == [
        "edit",
        "add",
        "delete",
        "bulk_complete",
        "import",
        "promote",
        "merge",
        "undo",
        "preload",
        "backfill",
        "confirm_keep",
        "map_value",
        "reject",
    ]
    assert json.dumps({"action": Action.BULK_COMPLETE}) == '{"action": "bulk_complete"}'
