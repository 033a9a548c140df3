from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.clients.authentication import request_client
from apps.clients.models import Scope
from apps.clients.scopes import ScopeMap
from apps.core.exceptions import ApplicationError
from apps.notifications.models import Channel
from apps.recipients.models import Recipient
from apps.recipients.selectors import recipient_get

from ..models import ConsentSource, PreferenceProfile
from ..selectors import consent_history, preference_document
from ..services import (
    ChangeContext,
    preference_channel_set,
    preference_opt_in,
    preference_opt_out,
    preference_update,
)
from .serializers import (
    ChannelPatchSerializer,
    ConsentOutputSerializer,
    OptSerializer,
    PreferenceInputSerializer,
    PreferenceOutputSerializer,
)


def _recipient(request: Request, external_id: str) -> Recipient:
    """The client's own recipient; another client's (or none) is 404."""
    return recipient_get(client=request_client(request), external_id=external_id)


def _context(request: Request) -> ChangeContext:
    key = getattr(request.auth, "prefix", "")
    return ChangeContext.from_request(request, source=ConsentSource.API, actor=f"api_key:{key}")


def _document(recipient: Recipient, profile: PreferenceProfile | None = None) -> Response:
    data = preference_document(recipient=recipient, profile=profile)
    return Response(PreferenceOutputSerializer(data).data)


class PreferenceDetailApi(APIView):
    required_scopes: ScopeMap = {"GET": Scope.READ, "PUT": Scope.SEND}

    @extend_schema(responses=PreferenceOutputSerializer)
    def get(self, request: Request, recipient: str) -> Response:
        """A recipient's preferences: every channel, categories, quiet hours, caps."""
        return _document(_recipient(request, recipient))

    @extend_schema(request=PreferenceInputSerializer, responses=PreferenceOutputSerializer)
    def put(self, request: Request, recipient: str) -> Response:
        """Set preferences. Sections and keys left out are kept; `quiet_hours: null` clears
        the quiet hours, a cap set to null removes it. Every change is recorded as consent
        evidence (`GET …/consent`)."""
        serializer = PreferenceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        target = _recipient(request, recipient)
        profile = preference_update(recipient=target, changes=serializer.changes(),
                                    context=_context(request))
        return _document(target, profile)


class PreferenceChannelApi(APIView):
    required_scopes: ScopeMap = {"PATCH": Scope.SEND}

    @extend_schema(request=ChannelPatchSerializer, responses=PreferenceOutputSerializer,
                   parameters=[OpenApiParameter("channel", str, OpenApiParameter.PATH,
                                                enum=Channel.values)])
    def patch(self, request: Request, recipient: str, channel: str) -> Response:
        """Turn one channel on or off (`{"enabled": false}`) and/or set its own quiet hours."""
        if channel not in Channel.values:
            raise ApplicationError(
                "Unknown channel.", code="invalid", status_code=400,
                fields={"channel": [f"Use one of {', '.join(Channel.values)}."]},
            )
        serializer = ChannelPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        target = _recipient(request, recipient)
        profile = preference_channel_set(
            recipient=target, channel=channel, enabled=data.get("enabled"),
            quiet_hours=data.get("quiet_hours"), set_quiet_hours="quiet_hours" in data,
            context=_context(request),
        )
        return _document(target, profile)


class PreferenceOptOutApi(APIView):
    required_scopes: ScopeMap = {"POST": Scope.SEND}

    @extend_schema(request=OptSerializer, responses=PreferenceOutputSerializer)
    def post(self, request: Request, recipient: str) -> Response:
        """Opt out of a channel, a category, or both (`{"channel": "sms"}`)."""
        serializer = OptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        target = _recipient(request, recipient)
        profile = preference_opt_out(recipient=target, context=_context(request),
                                     **serializer.validated_data)
        return _document(target, profile)


class PreferenceOptInApi(APIView):
    required_scopes: ScopeMap = {"POST": Scope.SEND}

    @extend_schema(request=OptSerializer, responses=PreferenceOutputSerializer)
    def post(self, request: Request, recipient: str) -> Response:
        """Opt back in to a channel, a category, or both."""
        serializer = OptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        target = _recipient(request, recipient)
        profile = preference_opt_in(recipient=target, context=_context(request),
                                    **serializer.validated_data)
        return _document(target, profile)


class PreferenceConsentApi(ListAPIView):
    """The consent history of a recipient, newest first (cursor-paginated): every change of
    its preferences, with source, actor, IP and user agent."""

    required_scopes: ScopeMap = {"GET": Scope.READ}
    serializer_class = ConsentOutputSerializer

    def get_queryset(self) -> Any:
        return consent_history(recipient=_recipient(self.request, self.kwargs["recipient"]))
