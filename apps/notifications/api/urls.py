from django.urls import path

from .views import (
    NotificationCancelApi,
    NotificationCollectionApi,
    NotificationDetailApi,
    NotificationStatusApi,
    RetryFailedApi,
)

urlpatterns = [
    path("notifications", NotificationCollectionApi.as_view(), name="notifications"),
    path("notifications/<uuid:notification_id>", NotificationDetailApi.as_view(),
         name="notification-detail"),
    path("notifications/<uuid:notification_id>/status", NotificationStatusApi.as_view(),
         name="notification-status"),
    path("notifications/<uuid:notification_id>/cancel", NotificationCancelApi.as_view(),
         name="notification-cancel"),
    path("admin/retry-failed", RetryFailedApi.as_view(), name="retry-failed"),
]
