"""Read-only admin for the pipeline's run records: nobody adds, changes or deletes them here, users with the view
permission (and superusers) can look."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from operations import task_admin  # noqa: F401  (django-q2's task lists under refgov's permissions)
from operations.upload_admin import can_upload, status_url, upload_urls
from pipeline.models import (
    Alert,
    DerivedReference,
    FactBatch,
    FactStatus,
    FactUpload,
    InboxFile,
    QuarantinedRow,
    RunStatus,
    SyncRun,
    SyncTableResult,
    SyncUpgrade,
    SyncWatermark,
    TableStatus,
    UnmappedValue,
    UploadState,
)
from refgov.html import NEUTRAL, badge

STATUS_COLORS = {
    RunStatus.RUNNING.value: "#1565c0",  # blue
    RunStatus.SUCCESS.value: "#2e7d32",  # green
    RunStatus.PARTIAL.value: "#ef6c00",  # orange
    RunStatus.FAILED.value: "#c62828",  # red
    RunStatus.ABANDONED.value: "#6a1b9a",  # purple: nobody recorded an outcome
    TableStatus.SKIPPED.value: "#757575",  # grey
    FactStatus.LOADED.value: "#2e7d32",
    FactStatus.REJECTED.value: "#ef6c00",
    UploadState.PREVIEWED.value: "#2e7d32",
    UploadState.REFUSED.value: "#ef6c00",
    UploadState.QUEUED.value: "#1565c0",
}


def status_badge(obj: SyncRun | SyncTableResult | FactBatch) -> SafeString:
    return badge(STATUS_COLORS.get(obj.status, NEUTRAL), obj.get_status_display())


class ReadOnlyMixin:
    """View only, for everyone (superusers included)."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False


class SyncTableResultInline(ReadOnlyInline):
    model = SyncTableResult
    fields = (
        "table",
        "table_status",
        "mode",
        "source",
        "rows_read",
        "inserted",
        "updated",
        "upgraded",
        "confirmed",
        "unchanged",
        "errors",
        "missing_at_source",
        "awaiting_source",
        "duration_ms",
        "watermark_from",
        "watermark_to",
        "message",
        "warnings",
        "error_samples",
        "missing_samples",
        "awaiting_samples",
        "columns_not_in_source",
    )
    readonly_fields = fields

    @admin.display(description=_("status"), ordering="status")
    def table_status(self, obj: SyncTableResult) -> SafeString:
        return status_badge(obj)


class SyncUpgradeInline(ReadOnlyInline):
    model = SyncUpgrade
    fields = ("table", "key", "derived_from_domain", "promoted", "changed", "kept")
    readonly_fields = fields


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("started_at", "finished_at", "run_status", "trigger", "full", "duration")
    list_filter = ("status", "trigger")
    date_hierarchy = "started_at"
    show_full_result_count = False
    fields = (
        "started_at",
        "finished_at",
        "run_status",
        "duration",
        "trigger",
        "full",
        "tables_requested",
        "message",
        "integrity",
    )
    readonly_fields = fields
    inlines = (SyncTableResultInline, SyncUpgradeInline)

    @admin.display(description=_("status"), ordering="status")
    def run_status(self, obj: SyncRun) -> SafeString:
        return status_badge(obj)

    @admin.display(description=_("duration"))
    def duration(self, obj: SyncRun) -> str:
        seconds = obj.duration_seconds
        if seconds is None:
            return "—"
        if seconds < 60:
            return f"{seconds:.1f} s"
        minutes, rest = divmod(int(round(seconds)), 60)
        return f"{minutes}:{rest:02d} min"


@admin.register(SyncUpgrade)
class SyncUpgradeAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("table", "key", "derived_from_domain", "promoted", "run")
    list_filter = ("table", "promoted", "derived_from_domain")
    search_fields = ("key",)
    list_select_related = ("run",)
    show_full_result_count = False
    fields = ("run", "table", "key", "derived_from_domain", "promoted", "changed", "kept")
    readonly_fields = fields


@admin.register(SyncWatermark)
class SyncWatermarkAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("table", "column", "value", "updated_at")
    search_fields = ("table",)
    fields = ("table", "column", "value", "updated_at")
    readonly_fields = fields


class DerivedReferenceInline(ReadOnlyInline):
    model = DerivedReference
    fields = ("table", "key", "fact_rows", "row_numbers", "sheet")
    readonly_fields = fields


class UnmappedValueInline(ReadOnlyInline):
    model = UnmappedValue
    fields = ("source_column", "value", "column", "fallback", "rows")
    readonly_fields = fields


@admin.register(FactBatch)
class FactBatchAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "started_at",
        "domain",
        "file_name",
        "sheet",
        "batch_status",
        "rows_read",
        "rows_loaded",
        "new_references",
    )
    list_filter = ("status", "domain", "degraded")
    search_fields = ("file_name", "checksum")
    date_hierarchy = "started_at"
    show_full_result_count = False
    fields = (
        "domain",
        "file_name",
        "file_path",
        "sheet",
        "checksum",
        "size_bytes",
        "periods",
        "batch_status",
        "degraded",
        "rows_read",
        "rows_loaded",
        "rows_replaced",
        "new_references",
        "filled_references",
        "quarantined",
        "message",
        "started_at",
        "finished_at",
        "upload",
    )
    readonly_fields = fields
    inlines = (DerivedReferenceInline, UnmappedValueInline)
    change_list_template = "admin/pipeline/factbatch/change_list.html"  # with 上传事实文件 for stewards

    @admin.display(description=_("status"), ordering="status")
    def batch_status(self, obj: FactBatch) -> SafeString:
        return status_badge(obj)

    @admin.display(description=_("quarantined rows"))
    def quarantined(self, obj: FactBatch) -> SafeString | str:
        count = QuarantinedRow.objects.filter(batch=obj).count()
        if not count:
            return "0"
        url = reverse("admin:pipeline_quarantinedrow_changelist") + f"?batch__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, count)

    @admin.display(description=_("uploaded in the admin"))
    def upload(self, obj: FactBatch) -> SafeString | str:
        found = FactUpload.objects.filter(stored_path=obj.file_path).only("pk", "file_name").first()
        if found is None:
            return "—"
        return format_html('<a href="{}">#{} {}</a>', status_url(found.pk), found.pk, found.file_name)

    def get_urls(self) -> list[URLPattern]:
        return upload_urls() + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {**(extra_context or {}), "can_upload": can_upload(request.user)})


@admin.register(DerivedReference)
class DerivedReferenceAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("table", "key", "fact_rows", "file_name", "sheet", "batch", "created_at")
    list_filter = ("table",)
    search_fields = ("key", "file_name")
    list_select_related = ("batch",)
    show_full_result_count = False
    fields = ("table", "key", "batch", "file_name", "sheet", "row_numbers", "fact_rows", "created_at")
    readonly_fields = fields


@admin.register(Alert)
class AlertAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("subject", "kind", "alert_state", "first_seen", "last_seen", "times_seen", "resolved_at")
    list_filter = ("kind", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("subject", "key")
    date_hierarchy = "first_seen"
    show_full_result_count = False
    fields = (
        "kind",
        "key",
        "subject",
        "text",
        "data",
        "first_seen",
        "last_seen",
        "times_seen",
        "resolved_at",
        "resolution",
    )
    readonly_fields = fields

    @admin.display(description=_("state"), ordering="resolved_at")
    def alert_state(self, obj: Alert) -> SafeString:
        return badge("#2e7d32", _("resolved")) if obj.resolved_at else badge("#c62828", _("open"))


@admin.register(InboxFile)
class InboxFileAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("path", "state", "size_bytes", "first_seen", "stable_since", "started_at")
    list_filter = ("state",)
    search_fields = ("path",)
    fields = (
        "inbox",
        "path",
        "state",
        "size_bytes",
        "signature",
        "first_seen",
        "stable_since",
        "started_at",
        "outcome",
        "message",
    )
    readonly_fields = fields


@admin.register(FactUpload)
class FactUploadAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Every upload, also the previews nobody confirmed; a row's page is the upload's page (preview, progress)."""

    list_display = ("uploaded_at", "file_name", "domain_list", "upload_state", "uploaded_by", "confirmed_by")
    list_filter = ("state",)
    search_fields = ("file_name", "checksum")
    date_hierarchy = "uploaded_at"
    show_full_result_count = False

    @admin.display(description=_("domains"))
    def domain_list(self, obj: FactUpload) -> str:
        return ", ".join(obj.domains)

    @admin.display(description=_("state"), ordering="state")
    def upload_state(self, obj: FactUpload) -> SafeString:
        return badge(STATUS_COLORS.get(obj.state, NEUTRAL), obj.get_state_display())

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not object_id.isdigit():
            return super().change_view(request, object_id, form_url, extra_context)
        return HttpResponseRedirect(status_url(int(object_id)))
