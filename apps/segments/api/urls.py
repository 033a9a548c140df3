from django.urls import URLPattern, URLResolver, path

from .views import (
    SegmentCollectionApi,
    SegmentCountApi,
    SegmentDetailApi,
    SegmentRecipientsApi,
    SegmentSendApi,
)

# {segment_ref} is the segment's id or its key.
urlpatterns: list[URLPattern | URLResolver] = [
    path("segments", SegmentCollectionApi.as_view(), name="segments"),
    path("segments/<str:segment_ref>", SegmentDetailApi.as_view(), name="segment-detail"),
    path("segments/<str:segment_ref>/count", SegmentCountApi.as_view(), name="segment-count"),
    path("segments/<str:segment_ref>/recipients", SegmentRecipientsApi.as_view(),
         name="segment-recipients"),
    path("segments/<str:segment_ref>/send", SegmentSendApi.as_view(), name="segment-send"),
]
