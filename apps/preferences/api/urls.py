from django.urls import URLPattern, URLResolver, path

from .unsubscribe import UnsubscribeView
from .views import (
    PreferenceChannelApi,
    PreferenceConsentApi,
    PreferenceDetailApi,
    PreferenceOptInApi,
    PreferenceOptOutApi,
)

urlpatterns: list[URLPattern | URLResolver] = [
    # Before the {recipient} routes: "unsubscribe" is not a recipient here.
    path("preferences/unsubscribe/<str:token>", UnsubscribeView.as_view(),
         name="preferences-unsubscribe"),
    path("preferences/<str:recipient>", PreferenceDetailApi.as_view(), name="preferences-detail"),
    path("preferences/<str:recipient>/channels/<str:channel>", PreferenceChannelApi.as_view(),
         name="preferences-channel"),
    path("preferences/<str:recipient>/opt-out", PreferenceOptOutApi.as_view(),
         name="preferences-opt-out"),
    path("preferences/<str:recipient>/opt-in", PreferenceOptInApi.as_view(),
         name="preferences-opt-in"),
    path("preferences/<str:recipient>/consent", PreferenceConsentApi.as_view(),
         name="preferences-consent"),
]
