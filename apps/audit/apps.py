from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        # Celery tasks act as `system`: the worker's task signals set the audit context.
        from .context import connect_celery_signals

        connect_celery_signals()
