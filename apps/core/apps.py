from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self) -> None:
        # The request id travels in task headers and into the worker's log lines.
        from .correlation import connect_celery_signals
        from .db import lookups  # noqa: F401  (registers `__any`)

        connect_celery_signals()
