"""The admin as stewards (数据管理员), viewers (只读用户) and superusers use it, on the real PostgreSQL schema.

Rows are created with the ORM; pages are fetched with the Django test client. Assertions look at the rows a changelist
actually lists (``cl.result_list``), at the page text and at the database afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from pipeline.models import RunStatus, SyncRun, SyncTableResult, SyncUpgrade, SyncWatermark, TableStatus
from reference.models import AnnuityPlan, Organization, PortfolioPlan, ProductLine, Source
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP
from reference.registry import TRACKING_COLUMNS, all_tables

pytestmark = pytest.mark.django_db

DOMAIN = "annuity_performance"


@dataclass(frozen=True)
class RefCase:
    """One reference model, three keys (authoritative, auto-derived pending review, auto-derived reviewed)."""

    model: type
    zh_plural: str
    en_plural: str
    name_field: str
    authoritative: str
    pending: str
    reviewed: str
    name: str  # value of ``name_field`` on the authoritative row

    @property
    def id(self) -> str:
        return self.model.__name__


CASES = [
    RefCase(AnnuityPlan, "年金计划", "Annuity plans", "short_name", "P0001", "P9001", "P9002", "甲公司企业年金计划"),
    RefCase(PortfolioPlan, "组合计划", "Portfolio plans", "name", "QTAN001", "QTAN901", "QTAN902", "甲公司固收组合"),
    RefCase(ProductLine, "产品线", "Product lines", "name", "PL201", "PL901", "PL902", "企年投资"),
    RefCase(Organization, "组织架构", "Organizations", "name", "G01", "G91", "G92", "北京分公司"),
]
by_model = pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
CASE = {c.model: c for c in CASES}


# --- helpers ----------------------------------------------------------------------------------------------------------


def admin_url(model, action: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{action}", args=args)


def auto_derived(reviewed: bool = False) -> dict:
    return {
        "source": Source.AUTO_DERIVED,
        "needs_review": not reviewed,
        "derived_from_domain": DOMAIN,
        "derived_at": timezone.now(),
    }


def listed_keys(response) -> set[str]:
    """Primary keys of the rows a changelist response shows."""
    assert response.status_code == 200, response.status_code
    return {obj.pk for obj in response.context["cl"].result_list}


def page(response) -> str:
    return response.content.decode()


def breadcrumb(response) -> str:
    """The last breadcrumb of an admin page (on a changelist: the model's verbose_name_plural)."""
    crumbs = re.search(r'<div class="breadcrumbs">(.*?)</div>', page(response), re.S)
    assert crumbs, "no breadcrumbs on the page"
    return crumbs.group(1).rsplit("&rsaquo;", 1)[-1].strip()


def form_data(response) -> dict[str, str]:
    """The POST body the change form would send unchanged (editable fields only; readonly ones are not in the form)."""
    form = response.context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is None:
            continue
        data[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return data


def make_user(django_user_model, username: str, group: str | None = None, *, perms: tuple[str, ...] = ()):
    user = django_user_model.objects.create_user(username=username, password="pw", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- fixtures ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def rows():
    """For each reference model: one authoritative, one auto-derived pending review, one auto-derived reviewed row."""
    plan = AnnuityPlan.objects.create(plan_code="P0001", short_name="甲公司企业年金计划", customer_name="甲公司")
    AnnuityPlan.objects.create(plan_code="P9001", short_name="乙公司企业年金计划", **auto_derived())
    AnnuityPlan.objects.create(plan_code="P9002", short_name="丙公司企业年金计划", **auto_derived(reviewed=True))
    PortfolioPlan.objects.create(portfolio_code="QTAN001", plan=plan, name="甲公司固收组合")
    PortfolioPlan.objects.create(portfolio_code="QTAN901", name="乙公司组合", **auto_derived())
    PortfolioPlan.objects.create(portfolio_code="QTAN902", name="丙公司组合", **auto_derived(reviewed=True))
    ProductLine.objects.create(code="PL201", name="企年投资", category="企业年金", line_no=1)
    ProductLine.objects.create(code="PL901", name="新产品线", **auto_derived())
    ProductLine.objects.create(code="PL902", name="另一产品线", **auto_derived(reviewed=True))
    Organization.objects.create(code="G01", name="北京分公司", region="华北")
    Organization.objects.create(code="G91", name="新机构", **auto_derived())
    Organization.objects.create(code="G92", name="另一机构", **auto_derived(reviewed=True))


@pytest.fixture
def steward(django_user_model):
    return make_user(django_user_model, "steward", STEWARD_GROUP)


@pytest.fixture
def viewer(django_user_model):
    return make_user(django_user_model, "viewer", VIEWER_GROUP)


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def sync_run():
    started = timezone.now() - timedelta(minutes=5)
    run = SyncRun.objects.create(
        started_at=started,
        finished_at=started + timedelta(seconds=83),
        status=RunStatus.PARTIAL,
        trigger="schedule",
        tables_requested=["年金计划", "组合计划"],
        message="组合计划: 2 rows rejected",
    )
    SyncTableResult.objects.create(
        run=run,
        table="组合计划",
        source="legacy_mysql annuity_hub.组合计划",
        mode="incremental",
        status=TableStatus.FAILED,
        rows_read=4321,
        inserted=17,
        errors=2,
        message="unknown parent 年金计划号 P7777",
    )
    SyncUpgrade.objects.create(
        run=run, table="年金计划", key="P9003", derived_from_domain=DOMAIN, changed={"计划简称": ["旧简称", "新简称"]}
    )
    return run


# --- reference changelists --------------------------------------------------------------------------------------------


@by_model
def test_steward_sees_changelist_with_source_badges(rows, steward, case):
    response = logged_in(steward).get(admin_url(case.model, "changelist"))

    assert listed_keys(response) == {case.authoritative, case.pending, case.reviewed}
    assert breadcrumb(response) == case.zh_plural
    text = page(response)
    assert "自动派生</span>" in text and "权威</span>" in text  # source badges (the filter sidebar uses <a>)
    assert case.name in text
    assert admin_url(case.model, "add") in text  # stewards may add


@by_model
def test_needs_review_filter_lists_only_pending_rows(rows, steward, case):
    response = logged_in(steward).get(admin_url(case.model, "changelist"), {"needs_review__exact": "1"})

    assert listed_keys(response) == {case.pending}
    text = page(response)
    assert admin_url(case.model, "change", case.pending) in text
    assert admin_url(case.model, "change", case.authoritative) not in text
    assert admin_url(case.model, "change", case.reviewed) not in text


@by_model
def test_source_filter_lists_only_auto_derived_rows(rows, steward, case):
    response = logged_in(steward).get(admin_url(case.model, "changelist"), {"source__exact": "auto_derived"})

    assert listed_keys(response) == {case.pending, case.reviewed}


@by_model
def test_search_by_key(rows, steward, case):
    response = logged_in(steward).get(admin_url(case.model, "changelist"), {"q": case.pending})

    assert listed_keys(response) == {case.pending}


@by_model
def test_search_by_name(rows, steward, case):
    response = logged_in(steward).get(admin_url(case.model, "changelist"), {"q": case.name})

    assert listed_keys(response) == {case.authoritative}


def test_portfolio_search_by_plan_code(rows, steward):
    response = logged_in(steward).get(admin_url(PortfolioPlan, "changelist"), {"q": "P0001"})

    assert listed_keys(response) == {"QTAN001"}


# --- change form ------------------------------------------------------------------------------------------------------


@by_model
def test_change_form_of_auto_derived_row_renders(rows, steward, case):
    response = logged_in(steward).get(admin_url(case.model, "change", case.pending))

    assert response.status_code == 200
    text = page(response)
    assert "跟踪信息" in text  # the Tracking fieldset
    assert DOMAIN in text  # readonly derived_from_domain
    assert "自动派生" in text  # readonly source, displayed with its label
    assert "source" not in response.context["adminform"].form.fields  # tracking fields are not editable


def test_steward_changes_text_field(rows, steward):
    client = logged_in(steward)
    url = admin_url(AnnuityPlan, "change", "P9001")
    data = form_data(client.get(url))
    assert data["short_name"] == "乙公司企业年金计划"
    data["short_name"] = "乙公司年金计划（已核对）"
    # Tracking fields are readonly: forged values in the POST are ignored.
    data.update(source="authoritative", needs_review="false", derived_from_domain="forged")

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    plan = AnnuityPlan.objects.get(pk="P9001")
    assert plan.short_name == "乙公司年金计划（已核对）"
    assert (plan.source, plan.needs_review, plan.derived_from_domain) == (Source.AUTO_DERIVED, True, DOMAIN)


def test_steward_changes_portfolio_plan_link(rows, steward):
    client = logged_in(steward)
    url = admin_url(PortfolioPlan, "change", "QTAN901")
    data = form_data(client.get(url))
    data.update(plan="P9001", name="乙公司组合（改）")

    response = client.post(url, data)

    assert response.status_code == 302
    portfolio = PortfolioPlan.objects.get(pk="QTAN901")
    assert (portfolio.plan_id, portfolio.name) == ("P9001", "乙公司组合（改）")


# --- viewer -----------------------------------------------------------------------------------------------------------


@by_model
def test_viewer_reads_changelist_without_add_link(rows, viewer, case):
    response = logged_in(viewer).get(admin_url(case.model, "changelist"))

    assert listed_keys(response) == {case.authoritative, case.pending, case.reviewed}
    assert admin_url(case.model, "add") not in page(response)


@by_model
def test_viewer_cannot_change(rows, viewer, case):
    client = logged_in(viewer)
    url = admin_url(case.model, "change", case.pending)
    view = client.get(url)
    assert view.status_code == 200  # view-only page
    assert not view.context["has_change_permission"]
    data = {case.model._meta.pk.name: case.pending, case.name_field: "viewer was here"}

    assert client.post(url, data).status_code == 403
    assert getattr(case.model.objects.get(pk=case.pending), case.name_field) != "viewer was here"


@by_model
def test_viewer_cannot_add(rows, viewer, case):
    client = logged_in(viewer)
    key_field = case.model._meta.pk.name

    assert client.get(admin_url(case.model, "add")).status_code == 403
    assert client.post(admin_url(case.model, "add"), {key_field: "NEW01"}).status_code == 403
    assert not case.model.objects.filter(pk="NEW01").exists()


# --- deleting ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def steward_with_delete(django_user_model):
    return make_user(django_user_model, "deleter", STEWARD_GROUP, perms=("delete_productline",))


def test_steward_group_has_no_delete_permission(rows, steward):
    assert not steward.has_perm("reference.delete_productline")
    assert logged_in(steward).get(admin_url(ProductLine, "delete", "PL901")).status_code == 403


def test_steward_with_delete_permission_cannot_delete_authoritative_row(rows, steward_with_delete):
    client = logged_in(steward_with_delete)
    url = admin_url(ProductLine, "delete", "PL201")

    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert ProductLine.objects.filter(pk="PL201").exists()


def test_steward_with_delete_permission_cannot_bulk_delete_authoritative_row(rows, steward_with_delete):
    response = logged_in(steward_with_delete).post(
        admin_url(ProductLine, "changelist"),
        {"action": "delete_selected", "_selected_action": ["PL201", "PL901"], "post": "yes"},
    )

    assert response.status_code == 403
    assert set(ProductLine.objects.values_list("pk", flat=True)) == {"PL201", "PL901", "PL902"}


def test_steward_with_delete_permission_deletes_auto_derived_row(rows, steward_with_delete):
    client = logged_in(steward_with_delete)
    url = admin_url(ProductLine, "delete", "PL901")

    assert client.get(url).status_code == 200
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not ProductLine.objects.filter(pk="PL901").exists()


def test_superuser_deletes_authoritative_row(rows, superuser):
    response = logged_in(superuser).post(admin_url(ProductLine, "delete", "PL201"), {"post": "yes"})

    assert response.status_code == 302
    assert not ProductLine.objects.filter(pk="PL201").exists()


# --- pipeline run records ---------------------------------------------------------------------------------------------


def test_sync_run_changelist_for_steward(sync_run, steward):
    response = logged_in(steward).get(admin_url(SyncRun, "changelist"))

    assert response.status_code == 200
    assert [run.pk for run in response.context["cl"].result_list] == [sync_run.pk]
    assert breadcrumb(response) == "预加载运行"
    text = page(response)
    assert "部分成功" in text  # status badge
    assert "1:23 min" in text  # duration column
    assert admin_url(SyncRun, "add") not in text


def test_sync_run_detail_shows_table_results_and_upgrades(sync_run, steward):
    response = logged_in(steward).get(admin_url(SyncRun, "change", sync_run.pk))

    assert response.status_code == 200
    text = page(response)
    assert "表同步结果" in text  # inline heading (SyncTableResult has no admin of its own)
    assert "legacy_mysql annuity_hub.组合计划" in text
    assert "4321" in text
    assert "unknown parent 年金计划号 P7777" in text
    assert "P9003" in text and "新简称" in text


@pytest.mark.parametrize("model", [SyncRun, SyncUpgrade, SyncWatermark], ids=lambda m: m.__name__)
def test_run_records_cannot_be_added_even_by_superuser(superuser, model):
    client = logged_in(superuser)

    assert client.get(admin_url(model, "add")).status_code == 403
    assert client.post(admin_url(model, "add"), {}).status_code == 403
    assert admin_url(model, "add") not in page(client.get(admin_url(model, "changelist")))


def test_sync_run_cannot_be_changed_or_deleted_even_by_superuser(sync_run, superuser):
    client = logged_in(superuser)

    assert client.get(admin_url(SyncRun, "delete", sync_run.pk)).status_code == 403
    assert client.post(admin_url(SyncRun, "delete", sync_run.pk), {"post": "yes"}).status_code == 403
    client.post(  # the action is not offered; a forged request must not delete either
        admin_url(SyncRun, "changelist"),
        {"action": "delete_selected", "_selected_action": [sync_run.pk], "post": "yes"},
    )
    assert client.post(admin_url(SyncRun, "change", sync_run.pk), {"message": "edited"}).status_code == 403
    run = SyncRun.objects.get(pk=sync_run.pk)
    assert run.message == "组合计划: 2 rows rejected"
    assert run.tables.count() == 1 and run.upgrades.count() == 1


# --- language ---------------------------------------------------------------------------------------------------------


@by_model
def test_changelist_language_follows_accept_language(rows, steward, case):
    client = logged_in(steward)
    url = admin_url(case.model, "changelist")

    chinese = client.get(url)
    english = client.get(url, HTTP_ACCEPT_LANGUAGE="en")

    assert breadcrumb(chinese) == case.zh_plural
    assert "自动派生</span>" in page(chinese) and "Auto-derived" not in page(chinese)
    assert breadcrumb(english) == case.en_plural
    assert "Auto-derived</span>" in page(english) and "自动派生" not in page(english)


# --- the schema behind the admin --------------------------------------------------------------------------------------


def execute(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def fetch(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_seed_dashboard_query_runs_as_written():
    for i in range(3):
        AnnuityPlan.objects.create(plan_code=f"A{i}")
    AnnuityPlan.objects.create(plan_code="D1", **auto_derived())
    AnnuityPlan.objects.create(plan_code="D2", **auto_derived(reviewed=True))

    result = fetch(
        "SELECT _source, COUNT(*) as record_count, SUM(CASE WHEN _needs_review THEN 1 ELSE 0 END) as pending_review "
        'FROM "business"."年金计划" GROUP BY _source'
    )

    assert {source: (count, pending) for source, count, pending in result} == {
        "authoritative": (3, 0),
        "auto_derived": (2, 1),
    }


@pytest.mark.parametrize("table", all_tables(), ids=lambda t: t.model.__name__)
def test_source_check_constraint_rejects_unknown_value(table):
    with pytest.raises(IntegrityError, match="source_valid"), transaction.atomic():
        execute(
            f'INSERT INTO {table.qualified_name} ("{table.key_column}", _source) VALUES (%s, %s)', ("K1", "guessed")
        )

    assert not table.model.objects.exists()


@pytest.mark.parametrize("table", all_tables(), ids=lambda t: t.model.__name__)
def test_tracking_columns_database_defaults(table):
    execute(f'INSERT INTO {table.qualified_name} ("{table.key_column}") VALUES (%s)', ("K1",))

    assert fetch(
        f'SELECT {", ".join(TRACKING_COLUMNS)} FROM {table.qualified_name} WHERE "{table.key_column}" = %s', ("K1",)
    ) == [("authoritative", False, None, None)]


@pytest.mark.parametrize("table", all_tables(), ids=lambda t: t.model.__name__)
def test_tracking_column_definitions_match_the_seed(table):
    columns = fetch(
        "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'business' AND table_name = %s "
        "AND column_name = ANY(%s) ORDER BY column_name",
        (table.name, list(TRACKING_COLUMNS)),
    )

    assert columns == [
        ("_derived_at", "timestamp with time zone", None, "YES", None),
        ("_derived_from_domain", "character varying", 50, "YES", None),
        ("_needs_review", "boolean", None, "NO", "false"),
        ("_source", "character varying", 20, "NO", "'authoritative'::character varying"),
    ]


def test_the_schema_migrations_leave_no_pattern_index_on_business_keys():
    indexes = fetch("SELECT indexname FROM pg_indexes WHERE schemaname = 'business' ORDER BY 1")

    assert indexes and not [name for (name,) in indexes if name.endswith("_like")]
    assert fetch("SELECT current_schemas(false)")[0][0][:2] == ["public", "business"]
