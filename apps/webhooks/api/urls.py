from django.urls import URLPattern, URLResolver, path

from .views import (
    WebhookEndpointAttemptsApi,
    WebhookEndpointCollectionApi,
    WebhookEndpointDetailApi,
    WebhookEndpointReplayApi,
    WebhookEndpointRotateSecretApi,
    WebhookEndpointTestApi,
)

# <uuid:…> keeps these apart from the provider callbacks (webhooks/sendgrid, twilio, …).
urlpatterns: list[URLPattern | URLResolver] = [
    path("webhooks", WebhookEndpointCollectionApi.as_view(), name="webhook-endpoints"),
    path("webhooks/<uuid:endpoint_id>", WebhookEndpointDetailApi.as_view(),
         name="webhook-endpoint-detail"),
    path("webhooks/<uuid:endpoint_id>/rotate-secret", WebhookEndpointRotateSecretApi.as_view(),
         name="webhook-endpoint-rotate-secret"),
    path("webhooks/<uuid:endpoint_id>/test", WebhookEndpointTestApi.as_view(),
         name="webhook-endpoint-test"),
    path("webhooks/<uuid:endpoint_id>/attempts", WebhookEndpointAttemptsApi.as_view(),
         name="webhook-endpoint-attempts"),
    path("webhooks/<uuid:endpoint_id>/replay", WebhookEndpointReplayApi.as_view(),
         name="webhook-endpoint-replay"),
]
