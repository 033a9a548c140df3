from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.clients.authentication import request_client
from apps.clients.models import Scope
from apps.clients.scopes import ScopeMap
from apps.core.exceptions import ApplicationError, NotFound

from ..models import Recipient
from ..selectors import devices_for, recipient_get
from ..services import device_register, device_unregister, recipient_upsert
from .serializers import (
    DeviceDeleteSerializer,
    DeviceInputSerializer,
    DeviceOutputSerializer,
    RecipientInputSerializer,
    RecipientOutputSerializer,
)


class RecipientDetailApi(APIView):
    required_scopes: ScopeMap = {"GET": Scope.READ, "PUT": Scope.SEND}

    @extend_schema(request=RecipientInputSerializer, responses={200: RecipientOutputSerializer,
                                                                201: RecipientOutputSerializer})
    def put(self, request: Request, external_id: str) -> Response:
        """Create or update a recipient by your own id for them. Fields left out are kept."""
        serializer = RecipientInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        limit = Recipient._meta.get_field("external_id").max_length or 200
        if len(external_id) > limit:
            raise ApplicationError("The recipient id is too long.", code="invalid", status_code=400,
                                   fields={"id": [f"At most {limit} characters."]})
        existed = request_client(request).recipients.filter(external_id=external_id).exists()
        recipient = recipient_upsert(
            client=request_client(request), external_id=external_id, data=serializer.validated_data
        )
        # The upsert's instance carries the timestamps it proposed (created_at = now even for a
        # row that existed): answer with the stored ones, as GET does.
        recipient.refresh_from_db(fields=["created_at", "updated_at"])
        return Response(
            RecipientOutputSerializer(recipient).data,
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )

    @extend_schema(responses=RecipientOutputSerializer)
    def get(self, request: Request, external_id: str) -> Response:
        recipient = recipient_get(client=request_client(request), external_id=external_id)
        return Response(RecipientOutputSerializer(recipient).data)


class RecipientDevicesApi(ListAPIView):
    required_scopes: ScopeMap = {"GET": Scope.READ, "POST": Scope.SEND, "DELETE": Scope.SEND}
    serializer_class = DeviceOutputSerializer

    def get_queryset(self) -> Any:
        recipient = recipient_get(client=request_client(self.request),
                                  external_id=self.kwargs["external_id"])
        return devices_for(recipient=recipient)

    @extend_schema(request=DeviceInputSerializer,
                   responses={201: DeviceOutputSerializer, 200: DeviceOutputSerializer})
    def post(self, request: Request, external_id: str) -> Response:
        """Register a push token (android, ios or web) for this recipient."""
        serializer = DeviceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        recipient = recipient_get(client=request_client(request), external_id=external_id)
        device, created = device_register(recipient=recipient, **serializer.validated_data)
        return Response(DeviceOutputSerializer(device).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=DeviceDeleteSerializer, responses={204: None},
                   parameters=[OpenApiParameter(
                       "token", str, required=True,
                       description="The push token (a JSON body `{\"token\": …}` works too).")])
    def delete(self, request: Request, external_id: str) -> Response:
        """Unregister a push token (JSON body `{"token": …}` or `?token=`)."""
        data = request.data if request.data else request.query_params
        serializer = DeviceDeleteSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        recipient = recipient_get(client=request_client(request), external_id=external_id)
        if not device_unregister(recipient=recipient, token=serializer.validated_data["token"]):
            raise NotFound("No active device with this token for this recipient.")
        return Response(status=status.HTTP_204_NO_CONTENT)
