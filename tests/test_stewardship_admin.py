"""The steward's workbench through the Django test client: queue order, filters, promote, bulk completion, merge,
delete protection and the provenance panel — as steward (数据管理员) and as viewer (只读用户)."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from decimal import Decimal

import openpyxl
import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from pipeline.demo.legacy import plan_code
from pipeline.facts.service import process_fact_file
from pipeline.models import ScaleFact
from reference.models import AnnuityPlan, AnnuityPlanUsage, KeyAlias, Source
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP
from tests.facts_support import create_references, scale_row, write_xlsx

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("config_copy")]
CHANGELIST = reverse("admin:reference_annuityplan_changelist")


def client_for(django_user_model, group: str) -> Client:
    user = django_user_model.objects.create_user(username=group, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def steward(django_user_model):
    return client_for(django_user_model, STEWARD_GROUP)


@pytest.fixture
def viewer(django_user_model):
    return client_for(django_user_model, VIEWER_GROUP)


def pending(code: str, days: int = 1, **values) -> AnnuityPlan:
    return AnnuityPlan.objects.create(
        plan_code=code,
        source=Source.AUTO_DERIVED,
        needs_review=True,
        derived_from_domain="annuity_performance",
        derived_at=timezone.now() - timedelta(days=days),
        **values,
    )


def complete_row(code: str, **extra) -> AnnuityPlan:
    return pending(code, short_name=f"计划{code}", plan_type="单一计划", customer_name=f"客户{code}", **extra)


def keys(response) -> list[str]:
    assert response.status_code == 200
    return [obj.pk for obj in response.context["cl"].result_list]


def action(client, name: str, selected: list[str], query: str = "?needs_review__exact=1", **extra):
    data = {"action": name, helpers.ACTION_CHECKBOX_NAME: selected, "index": 0, **extra}
    return client.post(CHANGELIST + query, data, follow="_apply" in extra or name == "promote_selected")


def test_the_queue_is_ordered_by_business_weight_then_age(steward):
    for code, days in [("N1", 1), ("N2", 9), ("N3", 5), ("N4", 3)]:
        pending(code, days)
    AnnuityPlanUsage.objects.create(row_id="N1", fact_rows=10, closing_assets=Decimal("500"), months=1)
    AnnuityPlanUsage.objects.create(row_id="N3", fact_rows=99, closing_assets=Decimal("900"), months=2)
    AnnuityPlan.objects.create(plan_code="A0")

    response = steward.get(CHANGELIST + "?needs_review__exact=1")

    assert keys(response) == ["N3", "N1", "N2", "N4"]  # weight first, then the oldest of the unweighted
    text = response.content.decode()
    assert "99 / 900" in text and "3 项必填缺失" in text
    assert keys(steward.get(CHANGELIST)) == ["A0", "N1", "N2", "N3", "N4"]


def test_required_fields_filter(steward):
    complete_row("N1")
    pending("N2", short_name="只有简称")
    assert keys(steward.get(CHANGELIST + "?required=missing")) == ["N2"]
    assert keys(steward.get(CHANGELIST + "?required=complete")) == ["N1"]


def test_steward_promotes_and_is_told_which_fields_are_missing(steward):
    complete_row("N1")
    pending("N2", short_name="只有简称")

    response = action(steward, "promote_selected", ["N1", "N2"])

    text = response.content.decode()
    assert "1 行已提升为权威记录" in text
    assert "1 行未提升：必填字段缺失（计划类型 ×1、客户名称 ×1），例如 N2" in text
    assert AnnuityPlan.objects.get(pk="N1").source == Source.AUTHORITATIVE
    assert AnnuityPlan.objects.get(pk="N2").needs_review


def test_select_across_promotes_the_whole_filtered_queue(steward):
    for i in range(150):
        complete_row(f"N{i:03d}")
    response = action(steward, "promote_selected", ["N000"], select_across=1)
    assert "150 行已提升为权威记录" in response.content.decode()
    assert not AnnuityPlan.objects.filter(needs_review=True).exists()


def test_viewer_has_no_changing_action_and_the_server_refuses(viewer):
    complete_row("N1")
    page = viewer.get(CHANGELIST)
    assert page.status_code == 200 and "promote_selected" not in page.content.decode()
    action(viewer, "promote_selected", ["N1"])
    action(viewer, "complete_selected", ["N1"], _apply="1", mode="overwrite", customer_name="x")
    assert AnnuityPlan.objects.get(pk="N1").needs_review and AnnuityPlan.objects.get(pk="N1").customer_name == "客户N1"
    promote = reverse("admin:reference_annuityplan_promote", args=["N1"])
    merge = reverse("admin:reference_annuityplan_merge", args=["N1"])
    assert viewer.post(promote).status_code == 403 and viewer.get(merge).status_code == 403
    assert AnnuityPlan.objects.get(pk="N1").needs_review


def test_bulk_completion_previews_then_applies_only_where_empty(steward):
    pending("N1", customer_name="已有")
    pending("N2")
    pending("N3", remark="旧")

    form = action(steward, "complete_selected", ["N1", "N2", "N3"])
    assert form.status_code == 200 and 'id="refgov-complete"' in form.content.decode()

    preview = action(
        steward, "complete_selected", ["N1", "N2", "N3"], _preview="1", mode="empty", customer_name="新客户"
    )
    assert "2 行将被修改" in preview.content.decode()
    assert AnnuityPlan.objects.get(pk="N2").customer_name is None  # a preview writes nothing

    done = action(
        steward,
        "complete_selected",
        ["N1", "N2", "N3"],
        _apply="1",
        mode="empty",
        customer_name="新客户",
        clear=["remark"],
    )
    assert "2 行已补全" in done.content.decode()  # N1 already had a customer and no remark
    assert dict(AnnuityPlan.objects.values_list("pk", "customer_name")) == {
        "N1": "已有",
        "N2": "新客户",
        "N3": "新客户",
    }
    assert AnnuityPlan.objects.get(pk="N3").remark is None

    bad = action(steward, "complete_selected", ["N1"], _preview="1", mode="empty")
    assert "请至少填写一个字段" in bad.content.decode()


def test_per_row_promote_button(steward):
    complete_row("N1")
    page = steward.get(reverse("admin:reference_annuityplan_change", args=["N1"])).content.decode()
    assert 'id="refgov-promote"' in page
    steward.post(reverse("admin:reference_annuityplan_promote", args=["N1"]))
    assert AnnuityPlan.objects.get(pk="N1").source == Source.AUTHORITATIVE


def test_merge_shows_the_impact_then_repoints_and_remembers(steward, tmp_path):
    create_references()
    typo, right = "P0O01", plan_code(1)
    process_fact_file(
        domain="annuity_performance",
        path=write_xlsx(
            tmp_path / "a.xlsx", {"规模明细": [scale_row(计划号=typo), scale_row(计划号=typo, 月度="202410")]}
        ),
    )
    url = reverse("admin:reference_annuityplan_merge", args=[typo])

    impact = steward.get(url).content.decode()
    assert "2 条事实数据" in impact and "2024-10, 2024-11" in impact

    confirm = steward.post(url, {"right_key": right}).content.decode()
    assert "refgov-merge-confirm" in confirm and AnnuityPlan.objects.filter(pk=typo).exists()
    assert "没有该键的行" in steward.post(url, {"right_key": "NOPE"}).content.decode()

    done = steward.post(url, {"right_key": right, "_confirm": "1"}, follow=True)
    assert f"{typo} 已合并到 {right}" in done.content.decode()
    assert not AnnuityPlan.objects.filter(pk=typo).exists()
    assert ScaleFact.objects.filter(plan_id=right).count() == 2
    assert KeyAlias.objects.filter(alias=typo, canonical=right).exists()


def test_deleting_a_row_facts_use_is_refused_with_the_merge_offered(django_user_model, tmp_path):
    create_references()
    process_fact_file(
        domain="annuity_performance", path=write_xlsx(tmp_path / "a.xlsx", {"规模明细": [scale_row(计划号="N5")]})
    )
    admin = django_user_model.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(admin)

    page = client.get(reverse("admin:reference_annuityplan_delete", args=["N5"])).content.decode()

    assert "1 条事实数据使用该行" in page and reverse("admin:reference_annuityplan_merge", args=["N5"]) in page
    assert reverse("admin:reference_annuityplan_reject", args=["N5"]) in page and "隔离行" in page
    client.post(reverse("admin:reference_annuityplan_delete", args=["N5"]), {"post": "yes"})
    assert AnnuityPlan.objects.filter(pk="N5").exists()


def test_change_form_shows_provenance_and_the_facts_using_the_row(steward, tmp_path):
    create_references()
    process_fact_file(
        domain="annuity_performance",
        path=write_xlsx(tmp_path / "f.xlsx", {"规模明细": [scale_row(), scale_row(计划号="N6", 期末资产规模=1234.0)]}),
    )
    page = steward.get(reverse("admin:reference_annuityplan_change", args=["N6"])).content.decode()
    provenance = page.split('id="refgov-provenance"')[1].split("</table>")[0]
    assert "f.xlsx" in provenance and "规模明细" in provenance and ">3<" in provenance  # row 3 of the sheet
    usage = page.split('class="refgov-usage"')[1].split("</table>")[0]
    assert "2024-11" in usage and "1234" in usage


def hidden_inputs(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def test_spreadsheet_round_trip_export_fill_import_with_preview(steward, tmp_path):
    create_references()
    process_fact_file(
        domain="annuity_performance",
        path=write_xlsx(
            tmp_path / "f.xlsx",
            {
                "规模明细": [
                    scale_row(计划号="N1", 计划名称="新计划一", 客户名称=None),
                    scale_row(计划号="N1", 计划名称="新计划一", 客户名称=None),
                    scale_row(计划号="N2", 计划名称="新计划二", 客户名称="客户二"),
                ]
            },
        ),
    )
    AnnuityPlan.objects.filter(pk="N1").update(short_name=None)
    export_url = reverse("admin:reference_annuityplan_export") + "?needs_review__exact=1"
    page = steward.get(export_url).content.decode()
    chosen = {name: "on" for name in re.findall(r'name="(annuityplanresource_[a-z_]+)"', page)}

    exported = steward.post(export_url, {"format": "0", "resource": "0", **chosen})

    assert exported.status_code == 200 and "spreadsheetml" in exported["Content-Type"]
    book = openpyxl.load_workbook(io.BytesIO(exported.content))
    sheet = book.active
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["年金计划号", "计划简称", "计划全称"] and "_source" in header
    rows = {r[0]: dict(zip(header, r, strict=True)) for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert set(rows) == {"N1", "N2"}  # the filtered queue only
    assert rows["N1"]["计划简称"] == "新计划一"  # suggested from the facts where empty
    assert rows["N1"]["_source"] == "auto_derived"

    for r in range(2, sheet.max_row + 1):
        if sheet.cell(r, 1).value == "N2":
            sheet.cell(r, header.index("客户名称") + 1, "客户二（已核实）")
    book.save(tmp_path / "filled.xlsx")
    before = {p.pk: (p.short_name, p.customer_name) for p in AnnuityPlan.objects.all()}

    with (tmp_path / "filled.xlsx").open("rb") as fh:
        preview = steward.post(
            reverse("admin:reference_annuityplan_import"), {"format": "0", "resource": "0", "import_file": fh}
        )
    html = preview.content.decode()
    assert preview.status_code == 200 and "process_import" in html
    assert {
        p.pk: (p.short_name, p.customer_name) for p in AnnuityPlan.objects.all()
    } == before  # the dry run wrote nothing

    steward.post(reverse("admin:reference_annuityplan_process_import"), hidden_inputs(html), follow=True)

    after = {p.pk: (p.short_name, p.customer_name) for p in AnnuityPlan.objects.all()}
    assert after["N2"] == (before["N2"][0], "客户二（已核实）")
    assert after["N1"] == ("新计划一", before["N1"][1])  # the suggestion the steward kept
    assert {k: v for k, v in after.items() if k not in {"N1", "N2"}} == {
        k: v for k, v in before.items() if k not in {"N1", "N2"}
    }
    assert AnnuityPlan.objects.get(pk="N2").source == Source.AUTO_DERIVED  # importing never promotes
    from reference.history_models import ReferenceEvent

    [event] = ReferenceEvent.objects.filter(key="N2")
    assert event.context.metadata["action"] == "import" and event.context.metadata["username"] == STEWARD_GROUP
    assert (event.before["客户名称"], event.after["客户名称"]) == ("客户二", "客户二（已核实）")


def test_import_of_an_unknown_key_is_refused_and_changes_nothing(steward, tmp_path):
    pending("N1")
    path = tmp_path / "new.csv"
    path.write_text("年金计划号,客户名称\nNEW1,某客户\nN1,客户一\n", encoding="utf-8")
    with path.open("rb") as fh:
        response = steward.post(
            reverse("admin:reference_annuityplan_import"), {"format": "1", "resource": "0", "import_file": fh}
        )
    html = response.content.decode()
    assert "NEW1" in html and "只能补全已有的行" in html and "process_import" not in html
    assert not AnnuityPlan.objects.filter(pk="NEW1").exists() and AnnuityPlan.objects.get(pk="N1").customer_name is None


def test_viewer_may_export_but_not_import(viewer):
    assert viewer.get(reverse("admin:reference_annuityplan_export")).status_code == 200
    assert viewer.get(reverse("admin:reference_annuityplan_import")).status_code == 403


def test_feedback_export_has_the_promoted_rows_in_the_legacy_layout(steward, django_user_model, settings):
    from pipeline.models import SyncRun, SyncUpgrade
    from tests.legacy import edit_config

    edit_config(
        settings.REFGOV_CONFIG_DIR, lambda d: d["preload"]["sources"]["年金计划"].update(columns={"计划简称": "简称"})
    )
    complete_row("N1")
    complete_row("N2")
    AnnuityPlan.objects.create(plan_code="P1", short_name="一直是权威")
    action(steward, "promote_selected", ["N1", "N2"])
    SyncUpgrade.objects.create(run=SyncRun.objects.create(), table="年金计划", key="N2")  # the source has it by now

    response = action(steward, "export_feedback", ["N1", "N2", "P1"], query="")

    assert response.status_code == 200 and "feedback_" in response["Content-Disposition"]
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    sheet = book["年金计划"]
    header = [c.value for c in sheet[1]]
    assert header[:2] == ["年金计划号", "简称"] and "_source" not in header
    assert [r[:2] for r in sheet.iter_rows(min_row=2, values_only=True)] == [("N1", "计划N1")]
    notes = list(book["来源说明"].iter_rows(min_row=2, values_only=True))
    assert notes[0][:2] == ("N1", "annuity_performance")

    none = steward.post(
        CHANGELIST, {"action": "export_feedback", helpers.ACTION_CHECKBOX_NAME: ["P1"], "index": 0}, follow=True
    )
    assert "所选行中没有由数据管理员提升" in none.content.decode()


def test_queue_queries_do_not_grow_with_the_page_size(steward, monkeypatch):
    from django.contrib import admin
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from reference.models import PortfolioPlan, PortfolioPlanUsage

    plan = AnnuityPlan.objects.create(plan_code="P1")
    PortfolioPlan.objects.bulk_create(
        PortfolioPlan(
            portfolio_code=f"Q{i:04d}",
            plan=plan,
            source=Source.AUTO_DERIVED,
            needs_review=True,
            derived_at=timezone.now(),
        )
        for i in range(60)
    )
    PortfolioPlanUsage.objects.bulk_create(PortfolioPlanUsage(row_id=f"Q{i:04d}", fact_rows=i) for i in range(60))
    import refgov.urls  # noqa: F401 — registers the admin classes (SimpleAdminConfig)

    model_admin = admin.site._registry[PortfolioPlan]
    counts = []
    for per_page in (10, 50):
        monkeypatch.setattr(model_admin, "list_per_page", per_page)
        with CaptureQueriesContext(connection) as captured:
            response = steward.get(reverse("admin:reference_portfolioplan_changelist") + "?needs_review__exact=1")
        assert len(response.context["cl"].result_list) == per_page
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1]
    assert response.context["cl"].result_list[0].pk == "Q0059"  # the heaviest first


def test_derivation_date_range_filter(steward):
    for code, days in [("N1", 1), ("N2", 10), ("N3", 40)]:
        pending(code, days)
    today = timezone.localdate()
    since, until = (today - timedelta(days=15)).isoformat(), (today - timedelta(days=5)).isoformat()

    response = steward.get(CHANGELIST + f"?needs_review__exact=1&derived_at__gte={since}&derived_at__lt={until}")

    assert keys(response) == ["N2"]
    form = response.content.decode().split('class="refgov-date-range"')[1].split("</form>")[0]
    assert f'value="{since}"' in form and f'value="{until}"' in form
    assert 'name="needs_review__exact" value="1"' in form  # the other filters are kept


def _bulk_delete_confirmation(client, selected: list[str]):
    return client.post(CHANGELIST, {"action": "delete_selected", helpers.ACTION_CHECKBOX_NAME: selected, "index": 0})


@pytest.mark.parametrize("facts_use_them", [False, True], ids=["unused", "used-by-facts"])
def test_bulk_delete_confirmation_queries_do_not_grow_with_the_selection(
    django_user_model, django_assert_max_num_queries, facts_use_them
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from pipeline.models import FactBatch, IncomeFact
    from tests.facts_support import month_partition

    codes = [f"D{i:03d}" for i in range(50)]
    for code in codes:
        pending(code)
    if facts_use_them:
        batch = FactBatch.objects.create(domain="annuity_performance", file_name="f.xlsx", file_path="f.xlsx")
        month = timezone.localdate().replace(day=1)
        month_partition("规模明细", month)
        month_partition("收入明细", month)
        ScaleFact.objects.bulk_create(ScaleFact(month=month, batch=batch, plan_id=code) for code in codes)
        IncomeFact.objects.bulk_create(IncomeFact(month=month, batch=batch, plan_id=codes[0]) for _ in range(2))
    admin = django_user_model.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(admin)

    with CaptureQueriesContext(connection) as two:
        _bulk_delete_confirmation(client, codes[:2])
    with django_assert_max_num_queries(len(two.captured_queries)):
        page = _bulk_delete_confirmation(client, codes).content.decode()

    if facts_use_them:
        assert f"{codes[0]}：3 条事实数据使用该行" in page and f"{codes[49]}：1 条事实数据使用该行" in page
        assert reverse("admin:reference_annuityplan_merge", args=[codes[49]]) in page
    else:
        assert "事实数据使用该行" not in page and codes[49] in page
    assert AnnuityPlan.objects.filter(pk__in=codes).count() == 50
