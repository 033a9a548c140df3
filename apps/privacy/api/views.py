"""GDPR endpoints for a client's own recipients: export everything, erase."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.clients.authentication import request_client
from apps.clients.models import Scope
from apps.clients.scopes import ScopeMap
from apps.notifications.api.schema import ErrorSerializer

from ..selectors import recipient_export, recipient_for_privacy
from ..services import recipient_erase, recipient_export_log
from .serializers import ErasureSerializer


def _error(status: int, code: str, message: str, description: str) -> dict[int, OpenApiResponse]:
    body = {"error": {"code": code, "message": message, "fields": {}}}
    return {status: OpenApiResponse(
        response=ErrorSerializer, description=description,
        examples=[OpenApiExample(code, value=body, response_only=True, status_codes=[str(status)])])}


NOT_FOUND = _error(404, "not_found", "Recipient 'ada_42' not found.",
                   "Unknown id, another client's, or an erased recipient's tombstone id.")
IN_FLIGHT = _error(409, "recipient_in_flight",
                   "A delivery to this recipient is being handed to a provider right now; retry "
                   "in a few seconds.", "Nothing was changed; retry a few seconds later.")


class RecipientExportApi(APIView):
    required_scopes: ScopeMap = {"GET": Scope.READ}

    @extend_schema(
        responses={200: OpenApiResponse(
            response=OpenApiTypes.OBJECT,
            description="Everything NotifyHub holds about the recipient (docs/privacy.md): "
                        "recipient, devices, preferences, consent_history, suppressions, "
                        "notifications, deliveries (with events and webhook messages), "
                        "audit_log."),
            **NOT_FOUND},
    )
    def get(self, request: Request, external_id: str) -> StreamingHttpResponse:
        """Export (GDPR access / portability): one JSON document, streamed."""
        recipient = recipient_for_privacy(client=request_client(request), external_id=external_id)
        recipient_export_log(recipient=recipient)
        return StreamingHttpResponse(recipient_export(recipient=recipient),
                                     content_type="application/json")


class RecipientEraseApi(APIView):
    required_scopes: ScopeMap = {"POST": Scope.SEND}

    @extend_schema(
        request=None,
        responses={200: ErasureSerializer, **NOT_FOUND, **IN_FLIGHT},
    )
    def post(self, request: Request, external_id: str) -> Response:
        """Erase (GDPR): the recipient's personal data is removed everywhere; what has not been
        sent is cancelled; their history keeps a tombstone id. Irreversible. The external id is
        free again afterwards (a new PUT creates a new person)."""
        recipient = recipient_for_privacy(client=request_client(request), external_id=external_id)
        result = recipient_erase(recipient=recipient)
        return Response(ErasureSerializer(result).data)
