from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from operations.views import run_history_view

admin.autodiscover()

urlpatterns = [
    path("admin/history/", admin.site.admin_view(run_history_view), name="refgov_history"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
