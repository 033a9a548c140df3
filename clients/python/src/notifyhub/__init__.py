"""NotifyHub's Python client.

    from notifyhub import Client
    client = Client(api_key="nh_…", base_url="https://notifyhub.example.com")
    notification = client.notifications.send(recipients=["user_1"], template_id="welcome",
                                              variables={"name": "Ada"})
    print(notification.id)
"""

from ._base import NotifyHubObject, RequestSpec, RetryPolicy, __version__, is_test_key
from ._client import AsyncClient, Client
from .errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    NotifyHubError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableError,
    WebhookVerificationError,
)
from .inbox import mint_inbox_token

__all__ = [
    "APIConnectionError", "APIError", "AsyncClient", "AuthenticationError", "BadRequestError",
    "Client", "ConflictError", "NotFoundError", "NotifyHubError", "NotifyHubObject",
    "PermissionDeniedError", "RateLimitError", "RequestSpec", "RetryPolicy", "ServerError",
    "UnprocessableError", "WebhookVerificationError", "__version__", "is_test_key",
    "mint_inbox_token",
]
