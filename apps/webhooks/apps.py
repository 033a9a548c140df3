from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"

    def ready(self) -> None:
        # Registers the tasks (published by name, apps/core/tasks.py).
        from .outbound import tasks  # noqa: F401
