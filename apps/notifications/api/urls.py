from django.urls import path

from .metrics_views import ChannelPerformanceApi, DeliveryRatesApi, QueueStatusApi, SystemStatusApi
from .views import (
    NotificationBulkApi,
    NotificationCancelApi,
    NotificationCollectionApi,
    NotificationDeliveriesApi,
    NotificationDetailApi,
    NotificationStatusApi,
    RetryFailedApi,
)

urlpatterns = [
    path("notifications", NotificationCollectionApi.as_view(), name="notifications"),
    path("notifications/bulk", NotificationBulkApi.as_view(), name="notifications-bulk"),
    path("notifications/<uuid:notification_id>", NotificationDetailApi.as_view(),
         name="notification-detail"),
    path("notifications/<uuid:notification_id>/deliveries", NotificationDeliveriesApi.as_view(),
         name="notification-deliveries"),
    path("notifications/<uuid:notification_id>/status", NotificationStatusApi.as_view(),
         name="notification-status"),
    path("notifications/<uuid:notification_id>/cancel", NotificationCancelApi.as_view(),
         name="notification-cancel"),
    path("admin/retry-failed", RetryFailedApi.as_view(), name="retry-failed"),
    path("admin/queue-status", QueueStatusApi.as_view(), name="queue-status"),
    path("metrics/delivery-rates", DeliveryRatesApi.as_view(), name="metrics-delivery-rates"),
    path("metrics/channel-performance", ChannelPerformanceApi.as_view(),
         name="metrics-channel-performance"),
    path("metrics/system-status", SystemStatusApi.as_view(), name="metrics-system-status"),
]
