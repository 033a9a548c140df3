"""The providers' callback routes (under /api/v1/), derived from the registry: every folder
whose declaration says `receipts=True` contributes its receipts.py's `urlpatterns`."""

from django.urls import URLPattern, URLResolver, include, path

from .registry import PACKAGE, declarations

urlpatterns: list[URLPattern | URLResolver] = [
    path("", include(f"{PACKAGE}.{folder}.receipts"))
    for folder, declaration in declarations().items() if declaration.receipts
]
