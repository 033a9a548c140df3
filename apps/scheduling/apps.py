from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "apps.scheduling"
    label = "scheduling"

    def ready(self) -> None:
        # Registers scheduling.recurring_send_task with the Celery app in every process that
        # loads Django (celery_app.py autodiscovers only apps.notifications so far).
        from . import tasks  # noqa: F401
