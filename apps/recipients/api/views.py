from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.clients.authentication import request_client

from ..selectors import recipient_get
from ..services import recipient_upsert
from .serializers import RecipientInputSerializer, RecipientOutputSerializer


class RecipientDetailApi(APIView):
    @extend_schema(request=RecipientInputSerializer, responses={200: RecipientOutputSerializer,
                                                                201: RecipientOutputSerializer})
    def put(self, request: Request, external_id: str) -> Response:
        """Create or update a recipient by your own id for them. Fields left out are kept."""
        serializer = RecipientInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        existed = request_client(request).recipients.filter(external_id=external_id).exists()
        recipient = recipient_upsert(
            client=request_client(request), external_id=external_id, data=serializer.validated_data
        )
        return Response(
            RecipientOutputSerializer(recipient).data,
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )

    @extend_schema(responses=RecipientOutputSerializer)
    def get(self, request: Request, external_id: str) -> Response:
        recipient = recipient_get(client=request_client(request), external_id=external_id)
        return Response(RecipientOutputSerializer(recipient).data)
