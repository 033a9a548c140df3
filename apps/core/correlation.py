"""Correlation ids across processes: the request id travels with the work it causes.

* **Publish** (`before_task_publish`, in every process that publishes: gunicorn, workers,
  beat): the current request id (RequestIdMiddleware's, or the running task's) goes into the
  task message's headers as `request_id`, unless the caller set one.
* **Run** (`task_prerun` / `task_postrun`, in the worker): the header becomes the request id of
  the task's context, so every line the task logs carries it (`[<id>]` in text,
  `"request_id"` in JSON) and every task it publishes inherits it. A task published with no
  request id (beat, a command, a message published before this existed) is its own origin:
  its task id is the request id, as the audit log already records for rows a task writes.
  A task run in-process (`apply()`, eager) keeps its caller's request id.

Lines a task logs from threads it starts itself carry the id only if the thread is started
with the task's context (`contextvars.copy_context()`)."""

from __future__ import annotations

import contextvars
from typing import Any

from .logging import request_id_var

HEADER = "request_id"

_tokens: dict[str, contextvars.Token[str]] = {}


def current_request_id() -> str:
    """The request id of the work in progress ('' outside a request or task)."""
    value = request_id_var.get()
    return "" if value == "-" else value


def add_request_id_header(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """`before_task_publish`: the current request id into the message headers."""
    request_id = current_request_id()
    if request_id and headers is not None and not headers.get(HEADER):
        headers[HEADER] = request_id


def task_request_id(task: Any, task_id: str | None) -> str:
    """The request id a task runs with: its message's header, else (run in-process) its
    caller's, else its own task id."""
    request = getattr(task, "request", None)
    header = getattr(request, HEADER, None)
    if not header:
        header = (getattr(request, "headers", None) or {}).get(HEADER)
    if header:
        return str(header)[:64]
    if getattr(request, "is_eager", False) and current_request_id():
        return current_request_id()
    return (task_id or "-")[:64]


def bind_task_request_id(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """`task_prerun`."""
    _tokens[task_id or ""] = request_id_var.set(task_request_id(task, task_id))


def unbind_task_request_id(task_id: str | None = None, **_: Any) -> None:
    """`task_postrun`."""
    token = _tokens.pop(task_id or "", None)
    if token is not None:
        try:
            request_id_var.reset(token)
        except ValueError:  # set in another context (should not happen): clear it
            request_id_var.set("-")


def connect_celery_signals() -> None:
    from celery.signals import before_task_publish, task_postrun, task_prerun

    before_task_publish.connect(add_request_id_header, weak=False,
                                dispatch_uid="correlation_publish")
    task_prerun.connect(bind_task_request_id, weak=False, dispatch_uid="correlation_prerun")
    task_postrun.connect(unbind_task_request_id, weak=False, dispatch_uid="correlation_postrun")
