"""The four reference tables of schema ``business`` and the tracking columns that tell the two layers apart."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import F
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


class Source(models.TextChoices):
    AUTHORITATIVE = "authoritative", _("Authoritative")
    AUTO_DERIVED = "auto_derived", _("Auto-derived")


# The ``derived_from_domain`` of a row a steward added by hand in the admin: like a promoted row, it is authoritative
# but the source has not brought it yet (it awaits the source, and the feedback export carries it).
MANUAL_ENTRY = "manual"


class TrackedReference(models.Model):
    """Tracking columns of the hybrid strategy, named exactly as the seed's ALTER TABLE statements."""

    source = models.CharField(
        _("source"),
        max_length=20,
        db_column="_source",
        choices=Source.choices,
        default=Source.AUTHORITATIVE,
        db_default=Source.AUTHORITATIVE,
    )
    needs_review = models.BooleanField(_("needs review"), db_column="_needs_review", default=False, db_default=False)
    derived_from_domain = models.CharField(
        _("derived from domain"), max_length=50, db_column="_derived_from_domain", null=True, blank=True
    )
    derived_at = models.DateTimeField(_("derived at"), db_column="_derived_at", null=True, blank=True)

    objects = models.Manager()  # what Django gives every table anyway, declared for the type checker

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(
                condition=models.Q(source__in=[s.value for s in Source]),
                name="%(class)s_source_valid",
            ),
        ]
        # Partial indexes: authoritative rows (the bulk of every preload) cost them nothing on insert.
        indexes = [
            models.Index(fields=["derived_at"], name="%(class)s_review_queue", condition=models.Q(needs_review=True)),
            models.Index(
                fields=["derived_from_domain", "derived_at"],
                name="%(class)s_auto_derived",
                condition=models.Q(source=Source.AUTO_DERIVED),
            ),
            # Rows stewards promoted (the few that may await the source): what each preload looks for.
            models.Index(
                fields=["derived_from_domain"],
                name="%(class)s_promoted",
                condition=models.Q(source=Source.AUTHORITATIVE, derived_from_domain__isnull=False),
            ),
        ]


def trigram_index(model: str, field: str) -> GinIndex:
    """A trigram index (``pg_trgm``) on a name column: typo suggestions look up similar names with it."""
    return GinIndex(fields=[field], name=f"{model}_{field}_trgm", opclasses=["gin_trgm_ops"])


def text(verbose: StrOrPromise, column: str, length: int = 255) -> models.CharField:
    return models.CharField(verbose, max_length=length, db_column=column, null=True, blank=True)


class AnnuityPlan(TrackedReference):
    plan_code = models.CharField(_("plan code"), max_length=50, primary_key=True, db_column="年金计划号")
    short_name = text(_("plan short name"), "计划简称")
    full_name = text(_("plan full name"), "计划全称")
    lead_branch_code = text(_("lead branch code"), "主拓代码", 50)
    plan_type = text(_("plan type"), "计划类型", 50)
    customer_name = text(_("customer name"), "客户名称")
    company_id = text(_("company id"), "company_id", 50)
    qualification = text(_("management qualification"), "管理资格")
    status = text(_("plan status"), "计划状态", 50)
    lead_branch = text(_("lead branch"), "主拓机构", 100)
    portfolio_count = models.IntegerField(_("portfolio count"), db_column="组合数", null=True, blank=True)
    is_umbrella = models.BooleanField(_("umbrella plan"), db_column="是否统括", null=True, blank=True)
    remark = models.TextField(_("remark"), db_column="备注", null=True, blank=True)

    class Meta(TrackedReference.Meta):
        db_table = "年金计划"
        indexes = [
            *TrackedReference.Meta.indexes,
            trigram_index("annuityplan", "short_name"),
            trigram_index("annuityplan", "customer_name"),
        ]
        verbose_name = _("annuity plan")
        verbose_name_plural = _("annuity plans")
        ordering = ["plan_code"]

    def __str__(self) -> str:
        return f"{self.plan_code} {self.short_name or ''}".strip()


class PortfolioPlan(TrackedReference):
    portfolio_code = models.CharField(_("portfolio code"), max_length=50, primary_key=True, db_column="组合代码")
    plan = models.ForeignKey(
        AnnuityPlan,
        verbose_name=_("plan code"),
        db_column="年金计划号",
        on_delete=models.PROTECT,
        related_name="portfolios",
        null=True,
        blank=True,
        db_index=False,
    )
    name = text(_("portfolio name"), "组合名称")
    short_name = text(_("portfolio short name"), "组合简称")
    status = text(_("portfolio status"), "组合状态", 50)
    start_date = models.DateField(_("operation start date"), db_column="运作开始日", null=True, blank=True)
    portfolio_type = text(_("portfolio type"), "组合类型", 50)
    subcategory = text(_("subcategory"), "子分类", 50)
    trustee = text(_("trustee"), "受托人")
    is_deposit = models.BooleanField(_("deposit portfolio"), db_column="是否存款组合", null=True, blank=True)
    is_external = models.BooleanField(_("external portfolio"), db_column="是否外部组合", null=True, blank=True)
    is_pk = models.BooleanField(_("PK portfolio"), db_column="是否PK组合", null=True, blank=True)
    investment_manager = text(_("investment manager"), "投资管理人")
    trustee_manager = text(_("trustee manager"), "受托管理人")
    investment_portfolio_code = text(_("investment portfolio code"), "投资组合代码", 50)
    investment_portfolio_name = text(_("investment portfolio name"), "投资组合名称")
    remark = models.TextField(_("remark"), db_column="备注", null=True, blank=True)

    class Meta(TrackedReference.Meta):
        db_table = "组合计划"
        indexes = [*TrackedReference.Meta.indexes, models.Index(fields=["plan"], name="portfolioplan_plan")]
        verbose_name = _("portfolio plan")
        verbose_name_plural = _("portfolio plans")
        ordering = ["portfolio_code"]

    def __str__(self) -> str:
        return f"{self.portfolio_code} {self.name or ''}".strip()


class ProductLine(TrackedReference):
    code = models.CharField(_("product line code"), max_length=20, primary_key=True, db_column="产品线代码")
    name = text(_("product line"), "产品线", 100)
    category = text(_("product category"), "产品类别", 100)
    business_group = text(_("business group"), "业务大类", 100)
    line_no = models.IntegerField(_("product line order"), db_column="NO_产品线", null=True, blank=True)
    category_no = models.IntegerField(_("product category order"), db_column="NO_产品类别", null=True, blank=True)

    class Meta(TrackedReference.Meta):
        db_table = "产品线"
        indexes = [*TrackedReference.Meta.indexes, trigram_index("productline", "name")]
        verbose_name = _("product line")
        verbose_name_plural = _("product lines")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name or ''}".strip()


class Organization(TrackedReference):
    code = models.CharField(_("branch code"), max_length=20, primary_key=True, db_column="机构代码")
    name = text(_("branch"), "机构", 100)
    annuity_center = text(_("annuity center"), "年金中心", 100)
    region = text(_("region"), "战区", 100)
    branch_no = models.IntegerField(_("branch order"), db_column="NO_机构", null=True, blank=True)
    center_no = models.IntegerField(_("annuity center order"), db_column="NO_年金中心", null=True, blank=True)
    region_no = models.IntegerField(_("region order"), db_column="NO_区域", null=True, blank=True)
    new_structure = text(_("new structure"), "新架构", 100)
    admin_domain = text(_("administrative domain"), "行政域", 100)

    class Meta(TrackedReference.Meta):
        db_table = "组织架构"
        indexes = [*TrackedReference.Meta.indexes, trigram_index("organization", "name")]
        verbose_name = _("organization")
        verbose_name_plural = _("organizations")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name or ''}".strip()


class KeyAlias(models.Model):
    """A wrong key merged into the right one: later fact loads resolve the alias before looking for unknown keys."""

    table = models.CharField(_("table"), max_length=50)
    alias = models.CharField(_("wrong key"), max_length=100)
    canonical = models.CharField(_("right key"), max_length=100)
    created_by = models.CharField(_("merged by"), max_length=150, blank=True, default="")
    created_at = models.DateTimeField(_("merged at"), auto_now_add=True)

    class Meta:
        verbose_name = _("key alias")
        verbose_name_plural = _("key aliases")
        ordering = ["table", "alias"]
        constraints = [models.UniqueConstraint(fields=["table", "alias"], name="keyalias_once")]

    def __str__(self) -> str:
        return f"{self.table}: {self.alias} → {self.canonical}"


class MergeRecord(models.Model):
    """What a merge did besides changing reference rows, so that its undo can put facts and aliases back."""

    context_id = models.UUIDField(_("change context"), db_index=True)
    table = models.CharField(_("table"), max_length=50)
    wrong_key = models.CharField(_("wrong key"), max_length=100)
    right_key = models.CharField(_("right key"), max_length=100)
    fact_ids = models.JSONField(_("re-pointed fact rows"), default=dict)
    moved_aliases = models.JSONField(_("aliases moved to the right key"), default=list)
    previous_alias = models.CharField(_("earlier alias target"), max_length=100, null=True, blank=True)
    undone = models.BooleanField(_("undone"), default=False)

    class Meta:
        verbose_name = _("merge")
        verbose_name_plural = _("merges")

    def __str__(self) -> str:
        return f"{self.table}: {self.wrong_key} → {self.right_key}"


class Usage(models.Model):
    """How much fact data depends on one reference row: the review queue's business weight. Refreshed by each fact
    load for the auto-derived keys it touches, and by merges."""

    fact_rows = models.BigIntegerField(_("fact rows"), default=0)
    closing_assets = models.DecimalField(_("closing assets"), max_digits=24, decimal_places=2, default=0)
    months = models.IntegerField(_("months"), default=0)
    refreshed_at = models.DateTimeField(_("refreshed at"), auto_now=True)

    class Meta:
        abstract = True


def _usage_of(model: type[TrackedReference], name: str) -> type[Usage]:
    attrs = {
        "__module__": __name__,
        "row": models.OneToOneField(
            model, on_delete=models.DO_NOTHING, primary_key=True, related_name="usage", db_constraint=False
        ),
        "Meta": type(
            "Meta",
            (),
            {
                "verbose_name": _("usage"),
                "verbose_name_plural": _("usage"),
                # the review queue's order: its first page is read from here, not sorted from every pending row
                "indexes": [
                    models.Index(
                        F("closing_assets").desc(nulls_last=True),
                        F("fact_rows").desc(nulls_last=True),
                        name=f"{name.lower()}_weight",
                    )
                ],
            },
        ),
    }
    return type(name, (Usage,), attrs)


AnnuityPlanUsage = _usage_of(AnnuityPlan, "AnnuityPlanUsage")
PortfolioPlanUsage = _usage_of(PortfolioPlan, "PortfolioPlanUsage")
ProductLineUsage = _usage_of(ProductLine, "ProductLineUsage")
OrganizationUsage = _usage_of(Organization, "OrganizationUsage")


from .history_models import ReferenceEvent  # noqa: E402,F401  (registers the change log with this app)
