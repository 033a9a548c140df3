"""What a web process loads before it serves its first request.

Django imports the URLconf, and with it every view module and the provider SDKs the callback
routes load (vonage's pydantic models alone take ~0.5 s of CPU), on the first request a
process resolves; the first send then imported the channels' provider classes (pyfcm, the
Google auth libraries) and set up Celery's publishing (its task registry, kombu's Redis
transport). In a gunicorn worker that first request took ~0.8 s of CPU, once per worker after
every start, deploy and `max_requests` recycle. `warm_up()`, called by notifyhub/wsgi.py and
asgi.py, does that work while the worker boots, before it accepts a connection (gunicorn
loads the application first). Nothing here opens a connection: a database or broker that is
down at boot is found by the first request (and /api/v1/ready), as before.

Last, what the process holds after booting (~190,000 objects: modules, classes, the SDKs'
models) is moved out of the garbage collector's reach with `gc.freeze()`: it lives as long as
the process, and each full collection walked all of it, ~130 ms of CPU in one pause every
~2,000 sends (9-27 ms frozen; measured in process, docs/operations.md "Ninth round")."""

from __future__ import annotations

import gc

from celery import current_app
from django.urls import get_resolver

from apps.notifications.providers.base import LIVE, TEST
from apps.notifications.providers.registry import supported_channels


def warm_up() -> None:
    resolver = get_resolver()
    resolver.url_patterns  # noqa: B018  # imports the URLconf and every module its routes name
    resolver.reverse_dict  # noqa: B018  # the lookup tables the first reverse() would build
    for mode in (LIVE, TEST):  # imports every configured provider class, caches the channels
        supported_channels(mode=mode)
    current_app.finalize(auto=True)  # the task registry publishing looks tasks up in
    current_app.connection_for_write().transport  # noqa: B018  # kombu's transport, not connected
    gc.collect()  # what the imports left as garbage is freed, not frozen
    gc.freeze()
