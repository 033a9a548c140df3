"""OpenAPI description of API-key auth (loaded by ClientsConfig.ready)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "apps.clients.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <api key>`; keys are created in the admin. "
                           "Each operation needs one of the key's scopes (`send`, `read`, "
                           "`templates`, `webhooks`, `admin`); without it: 403 "
                           "`insufficient_scope`. Test keys (`nh_test_…`) send only to the "
                           "provider sandbox and see only test notifications.",
        }
