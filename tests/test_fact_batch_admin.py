"""A fact batch's page shows what the load recorded, and no count it never records."""

import pytest
from django.contrib.auth.models import Group

from pipeline.models import FactBatch, FactStatus
from reference.permissions import VIEWER_GROUP

pytestmark = pytest.mark.django_db


def test_a_batch_page_shows_its_counts_and_no_rejected_row_count(client, django_user_model):
    """A file is loaded whole or not at all: no batch has rejected rows, so none shows a count of them (always 0)."""
    batch = FactBatch.objects.create(
        domain="annuity_performance",
        file_name="202411.xlsx",
        file_path="/x",
        checksum="c",
        status=FactStatus.LOADED,
        rows_read=12,
        rows_loaded=12,
        rows_replaced=3,
    )
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWER_GROUP))
    client.force_login(user)

    page = client.get(f"/admin/pipeline/factbatch/{batch.pk}/change/").content.decode()

    assert "读取行数" in page and "加载行数" in page and "替换行数" in page
    assert "拒绝行数" not in page
