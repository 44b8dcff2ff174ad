"""Fact tables of schema ``business`` (规模明细, 收入明细), the batches that load them, and why references exist."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from reference.models import AnnuityPlan, Organization, PortfolioPlan, ProductLine, TrackedReference

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


class FactStatus(models.TextChoices):
    RUNNING = "running", _("running")
    LOADED = "loaded", _("loaded")
    REJECTED = "rejected", _("rejected")
    FAILED = "failed", _("failed")
    # The process loading it ended without recording an outcome (killed, crashed); nothing of it was loaded.
    ABANDONED = "abandoned", _("abandoned")


class FactKind(models.TextChoices):
    FACTS = "facts", _("facts")
    REFERENCES = "references", _("references only")
    RESUBMIT = "resubmit", _("quarantined rows resubmitted")
    DROP = "drop", _("month dropped")


class FactBatch(models.Model):
    """One fact file (or sheet) processed once: what was read, loaded, rejected and derived."""

    domain = models.CharField(_("domain"), max_length=50)
    file_name = models.CharField(_("file"), max_length=255)
    file_path = models.TextField(_("file path"))
    sheet = models.CharField(_("sheet"), max_length=100, blank=True, default="")
    checksum = models.CharField(_("SHA-256"), max_length=64, db_index=True)
    size_bytes = models.BigIntegerField(_("size (bytes)"), default=0)
    periods = models.JSONField(_("months"), default=list, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=FactStatus.choices, default=FactStatus.RUNNING)
    kind = models.CharField(
        _("kind"),
        max_length=10,
        choices=FactKind.choices,
        default=FactKind.FACTS,
        help_text=_("references only: a backfill run, which derives reference rows and loads no facts"),
    )
    degraded = models.BooleanField(_("degraded (preload had failed)"), default=False)
    rows_read = models.IntegerField(_("rows read"), default=0)
    rows_loaded = models.IntegerField(_("rows loaded"), default=0)
    rows_replaced = models.IntegerField(_("rows replaced"), default=0)
    new_references = models.JSONField(_("new references per table"), default=dict, blank=True)
    filled_references = models.JSONField(
        _("pending rows completed per table"),
        default=dict,
        blank=True,
        help_text=_("backfill.mode always: auto-derived rows pending review whose empty fields this batch filled"),
    )
    message = models.TextField(_("message"), blank=True, default="")
    started_at = models.DateTimeField(_("started at"), default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("fact batch")
        verbose_name_plural = _("fact batches")
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["domain", "checksum", "sheet"], name="factbatch_same_file")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.file_name} {self.get_status_display()}"


class DerivedReference(models.Model):
    """Provenance of an auto-derived reference row: the batch, file, sheet and rows that produced it."""

    table = models.CharField(_("table"), max_length=50)
    key = models.CharField(_("key"), max_length=100)
    batch = models.ForeignKey(FactBatch, on_delete=models.CASCADE, related_name="derived", verbose_name=_("batch"))
    file_name = models.CharField(_("file"), max_length=255)
    sheet = models.CharField(_("sheet"), max_length=100, blank=True, default="")
    row_numbers = models.JSONField(_("row numbers (first ones)"), default=list, blank=True)
    fact_rows = models.IntegerField(_("fact rows referencing it"), default=0)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("derivation provenance")
        verbose_name_plural = _("derivation provenance")
        ordering = ["table", "key"]
        constraints = [models.UniqueConstraint(fields=["table", "key", "batch"], name="derivedreference_once")]
        indexes = [models.Index(fields=["table", "key"], name="derivedreference_key")]

    def __str__(self) -> str:
        return f"{self.table} {self.key} ← {self.file_name}"


def _reference(model: type[TrackedReference], column: str, verbose: StrOrPromise) -> models.ForeignKey[Any, Any]:
    """A fact's reference key; ``plan.scalefact_rows`` / ``plan.incomefact_rows`` are the facts using a plan."""
    return models.ForeignKey(
        model,
        on_delete=models.PROTECT,
        db_column=column,
        related_name="%(class)s_rows",
        verbose_name=verbose,
        null=True,
        blank=True,
        db_index=False,
    )


def _money(verbose: StrOrPromise, column: str) -> models.DecimalField[Any, Any]:
    return models.DecimalField(verbose, max_digits=20, decimal_places=2, db_column=column, null=True, blank=True)


def _rate(verbose: StrOrPromise, column: str) -> models.DecimalField[Any, Any]:
    return models.DecimalField(verbose, max_digits=20, decimal_places=10, db_column=column, null=True, blank=True)


def _text(verbose: StrOrPromise, column: str, length: int = 255) -> models.CharField[Any, Any]:
    return models.CharField(verbose, max_length=length, db_column=column, null=True, blank=True)


class FactRow(models.Model):
    """Columns every monthly detail fact shares; rows have no natural key (duplicates are legitimate)."""

    month = models.DateField(_("month"), db_column="月度")
    business_type = _text(_("business type"), "业务类型", 50)
    plan_type = _text(_("plan type"), "计划类型", 50)
    plan_name = _text(_("plan name"), "计划名称")
    portfolio_type = _text(_("portfolio type"), "组合类型", 50)
    portfolio_name = _text(_("portfolio name"), "组合名称")
    customer_name = _text(_("customer name"), "客户名称")
    branch_name = _text(_("branch name"), "机构名称", 100)
    account_no = _text(_("annuity account number"), "年金账户号", 100)
    account_name = _text(_("annuity account name"), "年金账户名")
    company_id = _text(_("company id"), "company_id", 50)
    batch = models.ForeignKey(
        FactBatch,
        on_delete=models.PROTECT,
        db_column="_batch_id",
        verbose_name=_("batch"),
        related_name="+",
        db_index=False,
    )
    source_row = models.IntegerField(
        _("row in the file"), db_column="_source_row", null=True, blank=True, editable=False
    )
    plan = _reference(AnnuityPlan, "计划代码", _("plan code"))
    portfolio = _reference(PortfolioPlan, "组合代码", _("portfolio code"))
    branch = _reference(Organization, "机构代码", _("branch code"))
    product_line = _reference(ProductLine, "产品线代码", _("product line code"))

    class Meta:
        abstract = True
        indexes = [
            # none on 月度: the tables are partitioned by month, and within a partition every row has the same 月度
            # keys are only ever matched by equality: the byte-wise operator class builds 1.5× faster
            models.Index(fields=["plan"], name="%(class)s_plan", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["portfolio"], name="%(class)s_portfolio", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["batch"], name="%(class)s_batch"),
        ]


class ScaleFact(FactRow):
    opening_assets = _money(_("opening assets"), "期初资产规模")
    closing_assets = _money(_("closing assets"), "期末资产规模")
    contribution = _money(_("contribution"), "供款")
    outflow_incl_benefits = _money(_("outflow incl. benefit payments"), "流失_含待遇支付")
    outflow = _money(_("outflow"), "流失")
    benefit_payments = _money(_("benefit payments"), "待遇支付")
    investment_income = _money(_("investment income"), "投资收益")
    period_return = _rate(_("period return"), "当期收益率")
    annualised_return = _rate(_("annualised return"), "年化收益率")

    class Meta(FactRow.Meta):
        db_table = "规模明细"
        verbose_name = _("scale detail")
        verbose_name_plural = _("scale details")


class IncomeFact(FactRow):
    fixed_fee = _money(_("fixed fee"), "固费")
    floating_fee = _money(_("floating fee"), "浮费")
    rebate = _money(_("rebate"), "回补")
    tax = _money(_("tax"), "税")

    class Meta(FactRow.Meta):
        db_table = "收入明细"
        verbose_name = _("income detail")
        verbose_name_plural = _("income details")
