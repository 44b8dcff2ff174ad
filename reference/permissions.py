"""Permission groups for the admin: data stewards (数据管理员) and read-only users (只读用户).

``ensure_groups`` is the one place that creates them; the data migration ``reference/0003_groups`` calls it with the
historical app registry, and a management command can call it with the live one (``apps=None``).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.apps.registry import Apps

STEWARD_GROUP = "数据管理员"
VIEWER_GROUP = "只读用户"

#: app label → model names (lower case, as in permission codenames)
REFERENCE_MODELS: dict[str, tuple[str, ...]] = {
    "reference": ("annuityplan", "portfolioplan", "productline", "organization"),
}
PIPELINE_MODELS: dict[str, tuple[str, ...]] = {
    "pipeline": (
        "syncrun",
        "synctableresult",
        "syncupgrade",
        "syncwatermark",
        "factbatch",
        "derivedreference",
        "scalefact",
        "incomefact",
        "alert",
        "inboxfile",
        "factupload",
        "quarantinedrow",
        "unmappedvalue",
        "valuemapping",
    ),
    "django_q": ("success", "failure", "schedule"),  # the task results the run history links to
}


#: stewards upload fact files in the admin (上传事实文件)
UPLOAD_PERMISSION = ("pipeline", "add_factupload")
#: stewards correct and resubmit quarantined rows (隔离行)
QUARANTINE_PERMISSION = ("pipeline", "change_quarantinedrow")
#: stewards map unmapped lookup values to a key and remove mappings (未映射值, 值映射)
MAPPING_PERMISSIONS = [("pipeline", "change_unmappedvalue"), ("pipeline", "change_valuemapping")]


def _codenames(models: dict[str, tuple[str, ...]], actions: Iterable[str]) -> list[tuple[str, str]]:
    actions = tuple(actions)
    return [(app, f"{action}_{model}") for app, names in models.items() for model in names for action in actions]


#: group name → list of (app_label, permission codename)
GROUP_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    STEWARD_GROUP: _codenames(REFERENCE_MODELS, ("view", "add", "change"))
    + _codenames(PIPELINE_MODELS, ("view",))
    + [UPLOAD_PERMISSION, QUARANTINE_PERMISSION, *MAPPING_PERMISSIONS],
    VIEWER_GROUP: _codenames(REFERENCE_MODELS, ("view",)) + _codenames(PIPELINE_MODELS, ("view",)),
}


def create_missing_permissions(
    apps: Apps | None = None, using: str = "default", app_labels: Iterable[str] | None = None
) -> None:
    """Create content types and default permissions now (during ``migrate`` they only appear at post_migrate)."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    registry = apps or global_apps
    labels = set(app_labels) if app_labels is not None else None
    for app_config in registry.get_app_configs():
        if labels is not None and app_config.label not in labels:
            continue
        original = getattr(app_config, "models_module", None)
        # Historical app configs (migration state) have no models module; create_permissions skips those.
        app_config.models_module = original or True  # type: ignore[assignment]  # any true value: "has models"
        try:
            create_permissions(app_config, verbosity=0, using=using, apps=registry)
        finally:
            app_config.models_module = original


def ensure_groups(apps: Apps | None = None, using: str = "default", reset: bool = False) -> dict[str, int]:
    """Create (or complete) the two groups with their permissions. Idempotent.

    ``reset=True`` makes each group's permissions exactly the configured ones; otherwise permissions are only added,
    never removed (a permission an administrator granted by hand stays). Returns group name → number of permissions
    granted by this configuration. Raises ``LookupError`` when a configured permission does not exist.
    """
    from django.apps import apps as global_apps

    registry = apps or global_apps
    app_labels = {app for perms in GROUP_PERMISSIONS.values() for app, _ in perms}
    create_missing_permissions(registry, using=using, app_labels=app_labels | {"auth", "contenttypes"})

    Group = registry.get_model("auth", "Group")
    Permission = registry.get_model("auth", "Permission")

    result: dict[str, int] = {}
    for group_name, wanted in GROUP_PERMISSIONS.items():
        found = {
            (app, codename): pk
            for pk, app, codename in Permission.objects.using(using)
            .filter(content_type__app_label__in={app for app, _ in wanted}, codename__in={c for _, c in wanted})
            .values_list("pk", "content_type__app_label", "codename")
        }
        missing = [f"{app}.{codename}" for app, codename in wanted if (app, codename) not in found]
        if missing:
            raise LookupError(f"group {group_name}: permissions not found: {', '.join(missing)}")
        group, _ = Group.objects.using(using).get_or_create(name=group_name)
        pks = [found[item] for item in wanted]
        if reset:
            group.permissions.set(pks)
        else:
            group.permissions.add(*pks)
        result[group_name] = len(pks)
    return result


def remove_groups(apps: Apps | None = None, using: str = "default") -> None:
    """Delete the two groups (reverse of ``ensure_groups``); users simply lose the membership."""
    from django.apps import apps as global_apps

    Group = (apps or global_apps).get_model("auth", "Group")
    Group.objects.using(using).filter(name__in=list(GROUP_PERMISSIONS)).delete()
