"""Publishing a Celery task by its registered name: the one way services reach a task.

Tasks are entry points (`apps/<app>/tasks.py`); nobody imports them, so a service never
depends on the task module that depends on it. Each app's `AppConfig.ready` imports its tasks
module, which registers them with the Celery app in every process that loads Django.

The registered task's own `apply_async` is used, not `celery_app.send_task`: it applies the
options the task declares where it is defined (its queue, its serializer), runs in-process
under eager mode, and a test that replaces a task's `apply_async` sees the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from celery import current_app
from django.db import transaction

logger = logging.getLogger(__name__)


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


# --- What a service decided must be published --------------------------------------------------

# A broker hiccup is retried briefly, in the publishing call; what still fails is handed to the
# publication's `on_failed` (its relay sweeper takes it from there).
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


@dataclass(frozen=True)
class Publication:
    """One task message a service decided on, for its caller to publish.

    Services (dispatch, the relay sweepers, the webhook outbox writers) return these instead of
    publishing, and their thin task or calling service hands them to
    `publications_publish_on_commit`. Each carries what makes it safe to lose: the rows it
    concerns are committed with a lease, so the relay sweeper publishes them again anyway;
    `on_failed` only makes that happen sooner (at the next sweep, not at the lease's end), and
    `on_published` records that the message is on its way (e.g. `pending` → `queued`).
    """

    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
    queue: str | None = None
    countdown: float | None = None
    what: str = ""  # names it in the log line when it cannot be published ("3 deliveries")
    options: dict[str, Any] = field(default_factory=dict, compare=False)
    on_failed: Callable[[], None] | None = field(default=None, compare=False, repr=False)
    on_published: Callable[[], None] | None = field(default=None, compare=False, repr=False)


def publications_publish(publications: Iterable[Publication]) -> int:
    """Publishes now (call it after commit: `publications_publish_on_commit` does). Never
    raises for a broker problem: a publication that cannot be published is logged and its
    `on_failed` runs. Returns how many were published."""
    published = 0
    for pub in publications:
        try:
            task_publish(pub.task, args=pub.args, kwargs=pub.kwargs, queue=pub.queue,
                         countdown=pub.countdown, retry=True, retry_policy=PUBLISH_RETRY,
                         **pub.options)
        except Exception:
            logger.exception("could not publish %s (%s); the relay sweeper will",
                             pub.what or "a task", pub.task)
            if pub.on_failed is not None:
                pub.on_failed()
            continue
        published += 1
        if pub.on_published is not None:
            pub.on_published()
    return published


def publications_publish_on_commit(publications: Iterable[Publication]) -> None:
    """The one on-commit helper: publishes these once the current transaction commits (at
    once outside one). Nothing is lost if the process dies before: every publication's rows
    are committed with a lease the relay sweeper watches."""
    publications = list(publications)
    if publications:
        transaction.on_commit(lambda: publications_publish(publications))
