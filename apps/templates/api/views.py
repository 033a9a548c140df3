"""Templates API: one view per path, one method per operation, each with its own input and
output serializers. Every lookup is scoped to the API key's client (another client's template
is a 404)."""

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

from ..selectors import (
    template_get,
    template_list,
    template_preview,
    template_version_get,
    template_versions,
)
from ..services import (
    template_create,
    template_delete,
    template_update,
    template_version_create,
    template_version_publish,
)
from .serializers import (
    PreviewInputSerializer,
    PreviewOutputSerializer,
    PreviewQuerySerializer,
    PublishedSerializer,
    PublishQuerySerializer,
    TemplateCreateSerializer,
    TemplateListFilterSerializer,
    TemplateOutputSerializer,
    TemplateSearchSerializer,
    TemplateUpdateSerializer,
    VersionCreateSerializer,
    VersionListFilterSerializer,
    VersionOutputSerializer,
)

_REF = OpenApiParameter("template_ref", str, OpenApiParameter.PATH,
                        description="The template's UUID or its key.")


def _actor(request: Request) -> str:
    return f"api_key:{getattr(request.auth, 'prefix', '')}"


class TemplateCollectionApi(ListAPIView):
    required_scopes: ScopeMap = {"GET": (Scope.READ, Scope.TEMPLATES), "POST": Scope.TEMPLATES}
    serializer_class = TemplateOutputSerializer

    @extend_schema(operation_id="templates_list", parameters=[TemplateListFilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Your templates, newest first (cursor pagination)."""
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        filters = TemplateListFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return template_list(client=request_client(self.request), **filters.validated_data)

    @extend_schema(operation_id="templates_create", request=TemplateCreateSerializer,
                   responses={201: TemplateOutputSerializer})
    def post(self, request: Request) -> Response:
        """Create a template; with `version`, also its first version (default locale),
        published. 409 `template_key_taken` if the key exists."""
        serializer = TemplateCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        client = request_client(request)
        created = template_create(client=client, content=data.pop("version", None),
                                  actor=_actor(request), **data)
        template = template_get(client=client, template_ref=str(created.id))
        return Response(TemplateOutputSerializer(template).data, status=status.HTTP_201_CREATED)


class TemplateSearchApi(ListAPIView):
    required_scopes: ScopeMap = {"GET": (Scope.READ, Scope.TEMPLATES)}
    serializer_class = TemplateOutputSerializer

    @extend_schema(operation_id="templates_search", parameters=[TemplateSearchSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Templates whose key or name contains `name` (case-insensitive) and that include
        `channel`; newest first (cursor pagination)."""
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        filters = TemplateSearchSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return template_list(client=request_client(self.request), **filters.validated_data)


class TemplateDetailApi(APIView):
    required_scopes: ScopeMap = {
        "GET": (Scope.READ, Scope.TEMPLATES),
        "PUT": Scope.TEMPLATES,
        "DELETE": Scope.TEMPLATES,
    }

    @extend_schema(operation_id="templates_retrieve", parameters=[_REF],
                   responses=TemplateOutputSerializer)
    def get(self, request: Request, template_ref: str) -> Response:
        """A template with its active version per locale."""
        template = template_get(client=request_client(request), template_ref=template_ref)
        return Response(TemplateOutputSerializer(template).data)

    @extend_schema(operation_id="templates_update", parameters=[_REF],
                   request=TemplateUpdateSerializer, responses=TemplateOutputSerializer)
    def put(self, request: Request, template_ref: str) -> Response:
        """Update name, channels, category, default_locale or sample_variables (fields left
        out are kept). Content changes are new versions. A new default locale must be
        published (422 `locale_not_published`)."""
        client = request_client(request)
        template = template_get(client=client, template_ref=template_ref)
        serializer = TemplateUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        template_update(template=template, **serializer.validated_data)
        template = template_get(client=client, template_ref=str(template.id))
        return Response(TemplateOutputSerializer(template).data)

    @extend_schema(operation_id="templates_destroy", parameters=[_REF], responses={204: None})
    def delete(self, request: Request, template_ref: str) -> Response:
        """Delete a template and its versions. 409 `template_in_use` once a notification used
        it (notifications keep the version they rendered)."""
        template = template_get(client=request_client(request), template_ref=template_ref)
        template_delete(template=template)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TemplateVersionCollectionApi(ListAPIView):
    required_scopes: ScopeMap = {"GET": (Scope.READ, Scope.TEMPLATES), "POST": Scope.TEMPLATES}
    serializer_class = VersionOutputSerializer

    @extend_schema(operation_id="templates_versions_list",
                   parameters=[_REF, VersionListFilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A template's versions (all locales, or `locale`), newest first (cursor pagination)."""
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        filters = VersionListFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        template = template_get(client=request_client(self.request),
                                template_ref=self.kwargs["template_ref"])
        return template_versions(template=template, **filters.validated_data)

    @extend_schema(operation_id="templates_versions_create", parameters=[_REF],
                   request=VersionCreateSerializer, responses={201: VersionOutputSerializer})
    def post(self, request: Request, template_ref: str) -> Response:
        """Add a version for a locale (default: the template's default locale), numbered after
        that locale's last. Published unless `publish` is false (a draft). 422
        `template_syntax_error` names the part that does not compile."""
        template = template_get(client=request_client(request), template_ref=template_ref)
        serializer = VersionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = template_version_create(template=template, actor=_actor(request),
                                          **serializer.validated_data)
        version = template_version_get(template=template, number=version.version,
                                       locale=version.locale)
        return Response(VersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


class TemplateVersionPublishApi(APIView):
    required_scopes: ScopeMap = {"POST": Scope.TEMPLATES}

    @extend_schema(
        operation_id="templates_versions_publish",
        parameters=[_REF, OpenApiParameter("number", int, OpenApiParameter.PATH),
                    PublishQuerySerializer],
        request=None, responses=PublishedSerializer,
    )
    def post(self, request: Request, template_ref: str, number: int) -> Response:
        """Make version `number` of `locale` the live one for that locale: publishes a draft,
        or rolls back to an older version. Notifications already accepted keep the version
        they were accepted with."""
        template = template_get(client=request_client(request), template_ref=template_ref)
        query = PublishQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        version = template_version_get(template=template, number=number,
                                       locale=query.validated_data.get("locale"))
        pointer = template_version_publish(version=version, actor=_actor(request))
        return Response(PublishedSerializer({
            "template": template.id, "locale": pointer.locale, "version": version.version,
            "published_at": pointer.published_at, "published_by": pointer.published_by,
        }).data)


def _preview_response(request: Request, template_ref: str, data: dict[str, Any]) -> Response:
    template = template_get(client=request_client(request), template_ref=template_ref)
    version, channels = template_preview(
        template=template, variables=data.get("variables") or {}, locale=data.get("locale"),
        number=data.get("version"),
    )
    return Response(PreviewOutputSerializer({
        "template": template.id,
        "version": {"id": version.id, "number": version.version, "locale": version.locale},
        "channels": channels,
    }).data)


class TemplatePreviewApi(APIView):
    required_scopes: ScopeMap = {
        "GET": (Scope.READ, Scope.TEMPLATES),
        "POST": (Scope.READ, Scope.TEMPLATES),
    }

    @extend_schema(operation_id="templates_preview", parameters=[_REF, PreviewQuerySerializer],
                   responses=PreviewOutputSerializer)
    def get(self, request: Request, template_ref: str) -> Response:
        """Render a version for `variables` (a JSON object in the query string; merged over the
        template's sample variables): every channel's parts. 422 `missing_variables` names
        the variables the version needs."""
        query = PreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return _preview_response(request, template_ref, query.validated_data)

    @extend_schema(operation_id="templates_preview_post", parameters=[_REF],
                   request=PreviewInputSerializer, responses=PreviewOutputSerializer)
    def post(self, request: Request, template_ref: str) -> Response:
        """The same as GET, with a JSON body (for long variable sets). Nothing is stored."""
        body = PreviewInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return _preview_response(request, template_ref, body.validated_data)
