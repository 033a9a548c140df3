from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from apps.core.api import HealthApi, ReadyApi
from apps.core.demo_page import demo_inbox_page, demo_inbox_send, demo_inbox_token
from apps.core.views import api_not_found, server_error
from apps.notifications.state_metrics import metrics_view
from apps.preferences.views import PreferenceCenterView
from apps.privacy.api.views import RecipientEraseApi, RecipientExportApi
from apps.recipients.api.views import RecipientDetailApi, RecipientDevicesApi

api_v1: list[URLPattern | URLResolver] = [
    path("health", HealthApi.as_view(), name="health"),
    path("ready", ReadyApi.as_view(), name="ready"),
    path("", include("apps.notifications.api.urls")),
    path("", include("apps.templates.api.urls")),
    path("", include("apps.preferences.api.urls")),
    path("", include("apps.segments.api.urls")),
    path("", include("apps.scheduling.api.urls")),
    path("", include("apps.webhooks.api.urls")),
    path("", include("apps.audit.api.urls")),
    path("", include("apps.inbox.api.urls")),
    path("recipients/<str:external_id>", RecipientDetailApi.as_view(), name="recipient-detail"),
    path("recipients/<str:external_id>/devices", RecipientDevicesApi.as_view(),
         name="recipient-devices"),
    path("recipients/<str:external_id>/export", RecipientExportApi.as_view(),
         name="recipient-export"),
    path("recipients/<str:external_id>/erase", RecipientEraseApi.as_view(),
         name="recipient-erase"),
    # Provider callbacks (receipts, inbound messages): derived from the provider registry.
    path("", include("apps.notifications.providers.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"),
         name="redoc"),
    path("admin/", admin.site.urls),
    # The hosted preference center (a recipient's page, signed link; apps/preferences/views.py).
    path("preferences/<str:token>/", PreferenceCenterView.as_view(), name="preference-center"),
    # django-prometheus' exposition plus the pipeline's state gauges (queue depth, oldest age…)
    path("metrics", metrics_view, name="prometheus-django-metrics"),
    # The inbox widget's demo page (DEMO_PAGES only; `make run` prints its URL).
    path("demo/inbox/", demo_inbox_page, name="demo-inbox"),
    path("demo/inbox/token", demo_inbox_token, name="demo-inbox-token"),
    path("demo/inbox/send", demo_inbox_send, name="demo-inbox-send"),
    path("api/<path:rest>", api_not_found),
]

handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.not_found"
handler500 = server_error
