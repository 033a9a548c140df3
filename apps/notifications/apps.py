from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "apps.notifications"
    label = "notifications"

    def ready(self) -> None:
        # Registers the system checks, and the tasks (published by name, apps/core/tasks.py).
        from . import checks, tasks  # noqa: F401
