from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django_q.tasks import async_task

from operations.management.base import RefgovCommand

TASKS = {
    "preload": "operations.tasks.preload_task",
    "facts": "operations.tasks.process_inbox_task",
    "review_report": "operations.tasks.review_report_task",
    "alerts": "operations.tasks.check_alerts_task",
}


class Command(RefgovCommand):
    help = (
        "Queue a task for the running qcluster now, as its schedule would (e.g. re-run the preload after fixing "
        "the legacy database). The result appears under the task results and on the run history page."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("task", choices=sorted(TASKS))

    def run(self, **options: Any) -> dict:
        name = options["task"]
        args = ("manual",) if name in {"facts", "preload"} else ()
        task_id = async_task(TASKS[name], *args, task_name=f"refgov.{name} (manual)")
        return {"task": name, "func": TASKS[name], "task_id": task_id}

    def emit_text(self, payload: dict) -> None:
        self.stdout.write(f"queued {payload['task']} ({payload['func']}) as task {payload['task_id']}")
