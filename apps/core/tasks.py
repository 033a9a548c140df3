"""Publishing a Celery task by its registered name: the one way services reach a task.

Tasks are entry points (`apps/<app>/tasks.py`); nobody imports them, so a service never
depends on the task module that depends on it. Each app's `AppConfig.ready` imports its tasks
module, which registers them with the Celery app in every process that loads Django.

The registered task's own `apply_async` is used, not `celery_app.send_task`: it applies the
options the task declares where it is defined (its queue, its serializer), runs in-process
under eager mode, and a test that replaces a task's `apply_async` sees the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import current_app
from django.db import transaction


def task_publish(name: str, *, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                 **options: Any) -> Any:
    """Publishes task `name` now; `options` go to `apply_async` (queue, countdown, retry,
    retry_policy, headers...). Raises what the broker raises: the caller decides."""
    if kwargs is not None:
        options["kwargs"] = kwargs
    return current_app.tasks[name].apply_async(args=list(args), **options)


def task_publish_on_commit(name: str, *, args: Sequence[Any] = (),
                           kwargs: dict[str, Any] | None = None, **options: Any) -> None:
    """Publishes task `name` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: task_publish(name, args=args, kwargs=kwargs, **options))
