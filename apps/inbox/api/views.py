"""The inbox API (docs/inbox.md): the token endpoint (API key) and the recipient's own
endpoints (recipient token). Views only parse, call a selector or service, and shape."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.clients.authentication import request_client
from apps.clients.models import Scope
from apps.clients.scopes import ScopeMap
from apps.core.exceptions import NotFound
from apps.preferences.center import preference_center_url
from apps.recipients.selectors import recipient_get

from ..selectors import inbox_counts, inbox_messages, message_payload
from ..services import Action, inbox_message_mark, inbox_messages_read_all
from ..tokens import mint_inbox_token
from .authentication import InboxTokenAuthentication, IsInboxRecipient, request_principal
from .serializers import (
    InboxCountsSerializer,
    InboxListFilterSerializer,
    InboxMarkSerializer,
    InboxMeSerializer,
    InboxPageSerializer,
    InboxTokenSerializer,
)
from .throttling import InboxRecipientThrottle

TOKEN_PARAMETER = OpenApiParameter(
    "token", str, required=False,
    description="The recipient token, where an Authorization header cannot be sent.")


class InboxTokenApi(APIView):
    """POST /api/v1/recipients/{external_id}/inbox-token (API key)."""

    required_scopes: ScopeMap = {"POST": (Scope.SEND, Scope.READ)}

    @extend_schema(request=None, responses={200: InboxTokenSerializer})
    def post(self, request: Request, external_id: str) -> Response:
        """A short-lived token for this recipient's inbox (INBOX_TOKEN_TTL_SECONDS, 1 h), and
        where its live stream is served. Give both to the recipient's browser or app."""
        client = request_client(request)
        recipient = recipient_get(client=client, external_id=external_id)
        minted = mint_inbox_token(client, recipient)
        return Response(InboxTokenSerializer({
            "token": minted.token, "expires_at": minted.expires_at,
            "stream_url": settings.INBOX_STREAM_URL}).data)


class InboxApiView(APIView):
    """Base of the endpoints a recipient token opens (no API key, no scope)."""

    authentication_classes = [InboxTokenAuthentication]
    permission_classes = [IsInboxRecipient]
    throttle_classes = [InboxRecipientThrottle]


def _counts(principal: Any) -> dict[str, int]:
    return inbox_counts(principal.client_id, principal.recipient_pk).as_dict()


class InboxMessagesApi(InboxApiView):
    @extend_schema(parameters=[InboxListFilterSerializer, TOKEN_PARAMETER],
                   responses={200: InboxPageSerializer})
    def get(self, request: Request) -> Response:
        """The recipient's messages, newest first (cursor pagination)."""
        principal = request_principal(request)
        query = InboxListFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        size = min(query.validated_data.get("page_size") or settings.INBOX_PAGE_SIZE,
                   settings.INBOX_MAX_PAGE_SIZE)
        cursor = query.validated_data.get("cursor")
        messages = inbox_messages(
            client_id=principal.client_id, recipient_pk=principal.recipient_pk,
            status=query.validated_data["status"],
            before_seq=int(cursor) if cursor else None, limit=size + 1)
        page, more = messages[:size], len(messages) > size
        next_url = None
        if more:
            params = request.query_params.copy()
            params["cursor"] = str(page[-1].seq)
            params.pop("token", None)  # never echo a credential into a URL we hand out
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        return Response({"next": next_url, "previous": None,
                         "results": [message_payload(m) for m in page]})


class InboxCountsApi(InboxApiView):
    @extend_schema(parameters=[TOKEN_PARAMETER], responses={200: InboxCountsSerializer})
    def get(self, request: Request) -> Response:
        """Unread, unseen and total messages (archived ones excluded)."""
        return Response(_counts(request_principal(request)))


class InboxMeApi(InboxApiView):
    @extend_schema(parameters=[TOKEN_PARAMETER], responses={200: InboxMeSerializer})
    def get(self, request: Request) -> Response:
        """Whose inbox this token opens."""
        principal = request_principal(request)
        return Response({"recipient_id": principal.recipient_id, "locale": principal.locale,
                         "preferences_url": preference_center_url(principal.client_id,
                                                                  principal.recipient_pk)})


MARK_SCHEMA = extend_schema(
    request=None, parameters=[TOKEN_PARAMETER],
    responses={200: InboxMarkSerializer,
               404: OpenApiResponse(description="Not a message of this inbox (`not_found`).")})


def _mark(request: Request, message_id: str, action: str) -> Response:
    principal = request_principal(request)
    result = inbox_message_mark(principal=principal, message_id=str(message_id), action=action)
    if not result.messages:
        raise NotFound("No such message in this inbox.")
    return Response({"changed": result.changed, "counts": _counts(principal)})


class InboxMessageReadApi(InboxApiView):
    @MARK_SCHEMA
    def post(self, request: Request, message_id: str) -> Response:
        """Mark the message read (and seen): timeline event `read`, webhook `delivery.read`."""
        return _mark(request, message_id, Action.READ)


class InboxMessageSeenApi(InboxApiView):
    @MARK_SCHEMA
    def post(self, request: Request, message_id: str) -> Response:
        """Mark the message seen: timeline event `seen`, webhook `delivery.seen`."""
        return _mark(request, message_id, Action.SEEN)


class InboxMessageUnreadApi(InboxApiView):
    @MARK_SCHEMA
    def post(self, request: Request, message_id: str) -> Response:
        """Mark the message unread again."""
        return _mark(request, message_id, Action.UNREAD)


class InboxMessageArchiveApi(InboxApiView):
    @MARK_SCHEMA
    def post(self, request: Request, message_id: str) -> Response:
        """Archive the message: it leaves the list and the counts (timeline event
        `archived`)."""
        return _mark(request, message_id, Action.ARCHIVE)


class InboxReadAllApi(InboxApiView):
    @extend_schema(request=None, parameters=[TOKEN_PARAMETER],
                   responses={200: InboxMarkSerializer})
    def post(self, request: Request) -> Response:
        """Mark every unread message read."""
        principal = request_principal(request)
        result = inbox_messages_read_all(principal=principal)
        return Response({"changed": result.changed, "counts": _counts(principal)})
