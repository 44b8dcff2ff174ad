from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.utils.translation import gettext_lazy as _


class PipelineConfig(AppConfig):
    name = "pipeline"
    verbose_name = _("Pipeline runs")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from pipeline.runs_liveness import check_client_connection

        connection_created.connect(check_client_connection, dispatch_uid="refgov.check_client_connection")
