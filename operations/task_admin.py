"""django-q2's task admins (成功任务, 失败任务) under refgov's permissions.

django-q2 offers its ``resubmit_task`` action to anyone who may look at the task lists, and deletes a failure it
resubmits (so the failure vanishes from 运行记录). Here resubmitting is an operator's action: it needs the change
permission on the task list (superusers; no group has it), and the failure stays recorded — the rerun is a new task.
The schedule list keeps django-q2's admin: changing or deleting a schedule needs the model's change / delete
permission, which only superusers have.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy, ngettext
from django_q import admin as q_admin  # registers django-q2's admins first, so that they can be replaced here
from django_q.models import Failure, Success, Task
from django_q.tasks import async_task


def resubmit(*, tasks: Iterable[Task]) -> list[str]:
    """Queue each task again with its function, arguments, hook and group; returns the new task ids."""
    return [
        async_task(
            task.func, *(task.args or ()), hook=task.hook, group=task.group, cluster=task.cluster, **(task.kwargs or {})
        )
        for task in tasks
    ]


@admin.action(description=gettext_lazy("Resubmit selected tasks to the queue"), permissions=["resubmit"])
def resubmit_task(modeladmin: admin.ModelAdmin[Task], request: HttpRequest, queryset: QuerySet[Task]) -> None:
    count = len(resubmit(tasks=queryset))
    modeladmin.message_user(
        request,
        ngettext("%(n)d task resubmitted to the queue.", "%(n)d tasks resubmitted to the queue.", count) % {"n": count},
        messages.SUCCESS,
    )


class ResubmitByOperatorsMixin:
    model: type[Task]
    actions = [resubmit_task]

    def has_resubmit_permission(self, request: HttpRequest) -> bool:
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


class SuccessAdmin(ResubmitByOperatorsMixin, q_admin.TaskAdmin):
    pass


class FailureAdmin(ResubmitByOperatorsMixin, q_admin.FailAdmin):
    pass


for model, model_admin in ((Success, SuccessAdmin), (Failure, FailureAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)
