from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class StewardshipConfig(AppConfig):
    name = "stewardship"
    verbose_name = _("Data stewardship")
