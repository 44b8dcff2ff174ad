"""The history page and undo in the admin, as a steward (数据管理员) and as a viewer (只读用户), via the test client."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from reference.history import Action, row_history, stewardship_context
from reference.models import AnnuityPlan, PortfolioPlan, Source
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP

pytestmark = pytest.mark.django_db


def logged_in(django_user_model, username: str, group: str):
    user = django_user_model.objects.create_user(username=username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return user, client


@pytest.fixture
def steward(django_user_model):
    return logged_in(django_user_model, "steward", STEWARD_GROUP)


@pytest.fixture
def viewer(django_user_model):
    return logged_in(django_user_model, "viewer", VIEWER_GROUP)


@pytest.fixture
def plan():
    return AnnuityPlan.objects.create(
        plan_code="P9001",
        short_name="乙公司",
        source=Source.AUTO_DERIVED,
        needs_review=True,
        derived_from_domain="annuity_performance",
    )


def history_url(key: str) -> str:
    return reverse("admin:reference_annuityplan_history", args=[key])


def undo_url(key: str, context_id) -> str:
    return reverse("admin:reference_annuityplan_undo", args=[key, context_id])


def csrf_post(client: Client, url: str, data: dict | None = None):
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    return client.post(url, {**(data or {}), "csrfmiddlewaretoken": page.context["csrf_token"]})


def promote(steward_user, key: str = "P9001"):
    with stewardship_context(user=steward_user, action=Action.PROMOTE) as context_id:
        AnnuityPlan.objects.filter(plan_code=key).update(source=Source.AUTHORITATIVE, needs_review=False)
    return context_id


def test_admin_edit_is_recorded_with_user_and_action(plan, steward):
    user, client = steward
    url = reverse("admin:reference_annuityplan_change", args=["P9001"])
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update(full_name="乙公司企业年金计划", is_umbrella="unknown")

    response = csrf_post(client, url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    [event] = row_history(table="年金计划", key="P9001")
    assert (event.username, event.action, event.label) == ("steward", "edit", "update")
    assert ("计划全称", None, "乙公司企业年金计划") in [(c.column, c.before, c.after) for c in event.changes]


def test_admin_add_is_recorded_as_insert(steward):
    user, client = steward
    url = reverse("admin:reference_portfolioplan_add")
    AnnuityPlan.objects.create(plan_code="P0001", short_name="甲公司")
    data = {
        "portfolio_code": "QTAN777",
        "name": "新组合",
        "plan": "P0001",
        "portfolio_type": "固定收益型",
    }  # required fields
    response = csrf_post(client, url, {**data, "source": "authoritative"})

    assert response.status_code == 302
    assert PortfolioPlan.objects.filter(portfolio_code="QTAN777").exists()
    [event] = row_history(table="组合计划", key="QTAN777")
    assert (event.username, event.action, event.label) == ("steward", "add", "insert")


def test_history_page_shows_before_and_after_in_chinese(plan, steward, viewer):
    promote(steward[0])

    for _, client in (steward, viewer):
        response = client.get(history_url("P9001"))
        assert response.status_code == 200
        text = response.content.decode()
        assert "P9001 乙公司 的历史" in text
        for expected in (
            "修改前",
            "修改后",
            "升级为权威记录",
            "steward",
            "数据来源",
            "自动派生",
            "权威",
            "待审核",
            "是",
            "否",
        ):
            assert expected in text, expected
    assert (
        undo_url("P9001", row_history(table="年金计划", key="P9001")[0].context_id)
        in steward[1].get(history_url("P9001")).content.decode()
    )
    assert "撤销" not in viewer[1].get(history_url("P9001")).content.decode()


def test_change_form_links_to_the_history_page(plan, steward):
    response = steward[1].get(reverse("admin:reference_annuityplan_change", args=["P9001"]))
    assert history_url("P9001") in response.content.decode()
    assert "历史" in response.content.decode()


def test_viewer_gets_403_on_undo(plan, steward, viewer):
    context_id = promote(steward[0])
    _, client = viewer

    assert client.get(undo_url("P9001", context_id)).status_code == 403
    steward_page = steward[1].get(undo_url("P9001", context_id))
    response = client.post(undo_url("P9001", context_id), {"csrfmiddlewaretoken": steward_page.context["csrf_token"]})
    assert response.status_code == 403
    assert AnnuityPlan.objects.get(plan_code="P9001").source == Source.AUTHORITATIVE


def test_steward_confirms_and_undoes(plan, steward):
    context_id = promote(steward[0])
    _, client = steward

    confirm = client.get(undo_url("P9001", context_id))
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "撤销此变更" in text and "升级为权威记录" in text and "P9001" in text
    assert AnnuityPlan.objects.get(plan_code="P9001").source == Source.AUTHORITATIVE  # GET changes nothing

    response = csrf_post(client, undo_url("P9001", context_id))

    assert response.status_code == 302 and response.url == history_url("P9001")
    restored = AnnuityPlan.objects.get(plan_code="P9001")
    assert (restored.source, restored.needs_review) == (Source.AUTO_DERIVED, True)
    page = client.get(response.url).content.decode()
    assert "已撤销：恢复 1 行" in page
    assert row_history(table="年金计划", key="P9001")[0].action == "undo"


def test_undo_without_csrf_token_is_refused(plan, steward):
    context_id = promote(steward[0])
    response = steward[1].post(undo_url("P9001", context_id))
    assert response.status_code == 403
    assert AnnuityPlan.objects.get(plan_code="P9001").source == Source.AUTHORITATIVE


def test_refused_undo_is_explained(plan, steward):
    context_id = promote(steward[0])
    with stewardship_context(user=steward[0], action=Action.EDIT):
        AnnuityPlan.objects.filter(plan_code="P9001").update(remark="之后又改")

    response = csrf_post(steward[1], undo_url("P9001", context_id))

    page = steward[1].get(response.url).content.decode()
    assert "无法撤销" in page and "年金计划 P9001" in page
    assert AnnuityPlan.objects.get(plan_code="P9001").remark == "之后又改"
