from django.urls import URLPattern, URLResolver, path

from .views import RecurringSendCollectionApi, RecurringSendDetailApi, RecurringSendRunApi

urlpatterns: list[URLPattern | URLResolver] = [
    path("schedules", RecurringSendCollectionApi.as_view(), name="schedules"),
    path("schedules/<str:schedule_id>", RecurringSendDetailApi.as_view(), name="schedule-detail"),
    path("schedules/<str:schedule_id>/run", RecurringSendRunApi.as_view(), name="schedule-run"),
]
