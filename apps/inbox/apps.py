from django.apps import AppConfig


class InboxConfig(AppConfig):
    """The in-app channel: each recipient's inbox (docs/inbox.md)."""

    name = "apps.inbox"
    label = "inbox"
    verbose_name = "In-app inbox"

    def ready(self) -> None:
        from . import tasks  # noqa: F401  (registers the retention task)
