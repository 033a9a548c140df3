from django.apps import AppConfig


class ClientsConfig(AppConfig):
    name = "apps.clients"
    label = "clients"

    def ready(self) -> None:
        from . import schema  # noqa: F401 - registers the OpenAPI auth scheme
