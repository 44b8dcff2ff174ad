"""上传事实文件: the admin pages of a fact file upload (thin callers of ``pipeline.facts.uploads``).

Stewards (``pipeline.add_factupload``) upload, confirm and download; whoever may view fact uploads sees an upload's
page (preview, progress, result). The upload form reads the request body through a handler that stops keeping the
file beyond REFGOV_UPLOAD_MAX_BYTES, so an oversized file never lands anywhere but Django's temporary file (dropped)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.core.files.uploadhandler import SkipFile, TemporaryFileUploadHandler
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from operations.tasks import TaskFailed, enqueue_upload
from pipeline.config import domain_names, load_domain
from pipeline.facts.uploads import (
    UploadRefused,
    confirm_upload,
    open_stored,
    preview_upload,
    store_upload,
    too_large,
    upload_limit,
)
from pipeline.models import DerivedReference, FactBatch, FactStatus, FactUpload, UploadState
from reference.permissions import UPLOAD_PERMISSION
from reference.registry import get_table

UPLOAD = ".".join(UPLOAD_PERMISSION)
VIEW = "pipeline.view_factupload"
REVIEW_LINK_KEYS = 100  # more keys than this (or a key with a comma) link to the batch's derivation list instead


def can_upload(user: AbstractBaseUser | AnonymousUser) -> bool:
    return isinstance(user, User) and user.is_active and user.has_perm(UPLOAD)


def _user(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


def upload_urls() -> list[URLPattern]:
    """The upload pages, under the fact batch list (``/admin/pipeline/factbatch/upload/…``)."""
    view = admin.site.admin_view
    return [
        path("upload/", view(upload_view), name="pipeline_factbatch_upload"),
        path("upload/<int:upload_id>/", view(upload_status_view), name="pipeline_factbatch_upload_status"),
        path("upload/<int:upload_id>/confirm/", view(confirm_view), name="pipeline_factbatch_upload_confirm"),
        path("upload/<int:upload_id>/file/", view(download_view), name="pipeline_factbatch_upload_file"),
    ]


def status_url(upload_id: int) -> str:
    return reverse("admin:pipeline_factbatch_upload_status", args=[upload_id])


class LimitedUpload(TemporaryFileUploadHandler):
    """Streams the uploaded file to a temporary file, and drops it once it passes the limit (the rest of the body is
    read and discarded; the form then says the file is too large)."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        super().__init__(request)
        self.limit, self.received, self.exceeded, self.name = limit, 0, False, ""

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        self.received, self.name = 0, file_name
        super().new_file(field_name, file_name, *args, **kwargs)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise SkipFile
        return super().receive_data_chunk(raw_data, start)


class UploadForm(forms.Form):
    domain = forms.ChoiceField(label=gettext_lazy("domain"), required=False)
    file = forms.FileField(label=gettext_lazy("fact file (xlsx or csv)"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [("", _("detect from the file name"))]
        for name in domain_names():
            choices.append((name, f"{name}（{load_domain(name).config.fact_table}）"))
        self.fields["domain"].choices = choices  # type: ignore[attr-defined]


@csrf_exempt  # the upload handler must be in place before the CSRF check reads the body; checked below
def upload_view(request: HttpRequest) -> HttpResponse:
    if not can_upload(request.user):
        raise PermissionDenied
    handler = LimitedUpload(request, upload_limit())
    request.upload_handlers = [handler]
    return _upload(request, handler)


@csrf_protect
def _upload(request: HttpRequest, handler: LimitedUpload) -> HttpResponse:
    form = UploadForm(request.POST, request.FILES) if request.method == "POST" else UploadForm()
    if request.method == "POST" and form.is_valid():
        uploaded = form.cleaned_data["file"]
        if handler.exceeded:
            form.add_error("file", too_large(name=handler.name))
        elif uploaded is None:
            form.add_error("file", _("Choose a file to upload."))
        else:
            try:
                upload = store_upload(
                    name=uploaded.name or "",
                    chunks=uploaded.chunks(),
                    size=uploaded.size or 0,
                    domain=form.cleaned_data["domain"] or None,
                    user=_user(request),
                )
            except UploadRefused as exc:
                form.add_error("file", str(exc))
            else:
                preview_upload(upload=upload)
                return HttpResponseRedirect(status_url(upload.pk))
            finally:
                uploaded.close()
    context = {
        **admin.site.each_context(request),
        "title": _("Upload a fact file"),
        "opts": FactBatch._meta,
        "form": form,
        "limit_mb": upload_limit() / (1 << 20),
        "patterns": {name: load_domain(name).config.files.patterns for name in domain_names()},
    }
    return TemplateResponse(request, "admin/refgov/upload_form.html", context)


@require_POST
def confirm_view(request: HttpRequest, upload_id: int) -> HttpResponse:
    if not can_upload(request.user):
        raise PermissionDenied
    upload = get_object_or_404(FactUpload, pk=upload_id)
    if confirm_upload(upload_id=upload.pk, user=_user(request)):
        try:
            enqueue_upload(upload_id=upload.pk)
        except TaskFailed:  # Q_CLUSTER sync (tests): the task ran here; its failure is on the upload's page
            pass
        messages.success(request, _("%(file)s: confirmed, the load is queued.") % {"file": upload.file_name})
    else:
        messages.warning(
            request,
            _("%(file)s is not awaiting confirmation (loaded, queued or refused).") % {"file": upload.file_name},
        )
    return HttpResponseRedirect(status_url(upload.pk))


def download_view(request: HttpRequest, upload_id: int) -> FileResponse:
    if not can_upload(request.user):
        raise PermissionDenied
    upload = get_object_or_404(FactUpload, pk=upload_id)
    try:
        stored = open_stored(upload)
    except (UploadRefused, OSError) as exc:
        raise Http404(str(exc)) from None
    return FileResponse(stored, as_attachment=True, filename=upload.file_name)


# the upload's page


@dataclass
class ReviewLink:
    table: str
    count: int
    url: str


@dataclass
class BatchView:
    batch: FactBatch
    reviews: list[ReviewLink] = field(default_factory=list)


def review_links(batches: list[FactBatch]) -> list[ReviewLink]:
    """Per reference table, the review queue filtered to the keys these batches derived (or, for many keys, their
    derivation list)."""
    keys: dict[str, list[str]] = {}
    derived = DerivedReference.objects.filter(batch__in=batches).values_list("table", "key").distinct()
    for table, key in derived.order_by("table", "key"):
        keys.setdefault(table, []).append(key)
    links = []
    for table, found in keys.items():
        if len(found) <= REVIEW_LINK_KEYS and not any("," in k for k in found):
            meta = get_table(table).model._meta
            query = urlencode({"needs_review__exact": "1", f"{meta.pk.name}__in": ",".join(found)})
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist") + "?" + query
        else:
            query = urlencode({"batch__id__in": ",".join(str(b.pk) for b in batches), "table": table})
            url = reverse("admin:pipeline_derivedreference_changelist") + "?" + query
        links.append(ReviewLink(table=table, count=len(found), url=url))
    return links


FILE_READ = re.compile(r"^(\d+)% of the file read")
ROWS_READ = re.compile(r"^([\d,]+) rows read")


def progress_label(message: str, *, queued: bool) -> str:
    """The fact service's progress message, in the steward's words."""
    if queued:
        return _("waiting for a worker (manage.py qcluster)")
    if "checking keys" in message:
        return _("checking reference keys")
    if "loading facts" in message:
        return _("writing the fact table")
    if found := FILE_READ.match(message):
        return _("%(percent)s%% of the file read") % {"percent": found[1]}
    if found := ROWS_READ.match(message):
        return _("%(rows)s rows read") % {"rows": found[1]}
    if message == "reading" or not message:
        return _("reading the file")
    return message


def _scope_rows(entry: dict[str, Any]) -> list[list[Any]]:
    columns = entry.get("scope_columns", [])
    return [[*(p["values"].get(c) for c in columns), p["rows"], p["replaced"]] for p in entry.get("scope", [])]


def upload_status_view(request: HttpRequest, upload_id: int) -> TemplateResponse:
    if not (request.user.has_perm(VIEW) or can_upload(request.user)):
        raise PermissionDenied
    upload = get_object_or_404(FactUpload.objects.select_related("uploaded_by", "confirmed_by"), pk=upload_id)
    batches = list(FactBatch.objects.filter(file_path=upload.stored_path).order_by("pk")) if upload.stored_path else []
    interrupted = any(b.status == FactStatus.ABANDONED for b in batches)
    previews = [{**e, "scope_rows": _scope_rows(e)} for e in upload.preview.get("domains", [])]
    context = {
        **admin.site.each_context(request),
        "title": _("Fact file upload #%(id)d: %(file)s") % {"id": upload.pk, "file": upload.file_name},
        "opts": FactBatch._meta,
        "upload": upload,
        "previews": previews,
        "batches": [BatchView(b, review_links([b]) if b.status == FactStatus.LOADED else []) for b in batches],
        "reviews": review_links([b for b in batches if b.status == FactStatus.LOADED]),
        "can_upload": can_upload(request.user),
        "interrupted": interrupted,
        "refresh": upload.in_progress and not interrupted,
        "progress_label": progress_label(upload.progress_message, queued=upload.state == UploadState.QUEUED),
    }
    return TemplateResponse(request, "admin/refgov/upload.html", context)
