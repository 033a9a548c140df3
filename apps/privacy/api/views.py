"""GDPR endpoints for a client's own recipients: export everything, erase."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.clients.authentication import request_client
from apps.notifications.api.schema import ErrorSerializer, error_responses

from ..selectors import recipient_export, recipient_for_privacy
from ..services import recipient_erase, recipient_export_log
from .serializers import ErasureSerializer

IN_FLIGHT_EXAMPLE = {"error": {
    "code": "recipient_in_flight",
    "message": "A delivery to this recipient is being handed to a provider right now; retry in "
               "a few seconds.",
    "fields": {}}}


class RecipientExportApi(APIView):
    required_scopes = {"GET": "read", "POST": "send"}

    @extend_schema(
        responses={200: OpenApiResponse(
            response=OpenApiTypes.OBJECT,
            description="Everything NotifyHub holds about the recipient (docs/privacy.md): "
                        "recipient, devices, preferences, consent_history, suppressions, "
                        "notifications, deliveries (with events and webhook messages), "
                        "audit_log."),
            **error_responses(404)},
    )
    def get(self, request: Request, external_id: str) -> StreamingHttpResponse:
        """Export (GDPR access / portability): one JSON document, streamed."""
        recipient = recipient_for_privacy(client=request_client(request), external_id=external_id)
        recipient_export_log(recipient=recipient)
        return StreamingHttpResponse(recipient_export(recipient=recipient),
                                     content_type="application/json")


class RecipientEraseApi(APIView):
    required_scopes = {"GET": "read", "POST": "send"}

    @extend_schema(
        request=None,
        responses={200: ErasureSerializer, **error_responses(404),
                   409: OpenApiResponse(response=ErrorSerializer, description="Retry shortly.",
                                        examples=[OpenApiExample("recipient_in_flight",
                                                                 value=IN_FLIGHT_EXAMPLE,
                                                                 response_only=True,
                                                                 status_codes=["409"])])},
    )
    def post(self, request: Request, external_id: str) -> Response:
        """Erase (GDPR): the recipient's personal data is removed everywhere; what has not been
        sent is cancelled; their history keeps a tombstone id. Irreversible. The external id is
        free again afterwards (a new PUT creates a new person)."""
        recipient = recipient_for_privacy(client=request_client(request), external_id=external_id)
        result = recipient_erase(recipient=recipient)
        return Response(ErasureSerializer(result).data)
