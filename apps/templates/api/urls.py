from django.urls import URLPattern, URLResolver, path

from .views import (
    TemplateCollectionApi,
    TemplateDetailApi,
    TemplatePreviewApi,
    TemplateSearchApi,
    TemplateVersionCollectionApi,
    TemplateVersionPublishApi,
)

# `search` comes before `<template_ref>` (and is a reserved key).
urlpatterns: list[URLPattern | URLResolver] = [
    path("templates", TemplateCollectionApi.as_view(), name="templates"),
    path("templates/search", TemplateSearchApi.as_view(), name="template-search"),
    path("templates/<str:template_ref>", TemplateDetailApi.as_view(), name="template-detail"),
    path("templates/<str:template_ref>/versions", TemplateVersionCollectionApi.as_view(),
         name="template-versions"),
    path("templates/<str:template_ref>/versions/<int:number>/publish",
         TemplateVersionPublishApi.as_view(), name="template-version-publish"),
    path("templates/<str:template_ref>/preview", TemplatePreviewApi.as_view(),
         name="template-preview"),
]
