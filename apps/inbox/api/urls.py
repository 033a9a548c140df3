from django.urls import path

from . import views

urlpatterns = [
    path("recipients/<str:external_id>/inbox-token", views.InboxTokenApi.as_view(),
         name="recipient-inbox-token"),
    path("inbox/messages", views.InboxMessagesApi.as_view(), name="inbox-messages"),
    path("inbox/messages/read-all", views.InboxReadAllApi.as_view(), name="inbox-read-all"),
    path("inbox/messages/<uuid:message_id>/read", views.InboxMessageReadApi.as_view(),
         name="inbox-message-read"),
    path("inbox/messages/<uuid:message_id>/seen", views.InboxMessageSeenApi.as_view(),
         name="inbox-message-seen"),
    path("inbox/messages/<uuid:message_id>/unread", views.InboxMessageUnreadApi.as_view(),
         name="inbox-message-unread"),
    path("inbox/messages/<uuid:message_id>/archive", views.InboxMessageArchiveApi.as_view(),
         name="inbox-message-archive"),
    path("inbox/counts", views.InboxCountsApi.as_view(), name="inbox-counts"),
    path("inbox/me", views.InboxMeApi.as_view(), name="inbox-me"),
]
