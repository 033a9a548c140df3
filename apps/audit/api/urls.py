from django.urls import URLPattern, URLResolver, path

from .views import AuditLogListApi

urlpatterns: list[URLPattern | URLResolver] = [
    path("audit/logs", AuditLogListApi.as_view(), name="audit-logs"),
]
