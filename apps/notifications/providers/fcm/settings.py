"""Firebase Cloud Messaging HTTP v1 (push). Values: FCM_* in notifyhub/settings/base.py. No
receipts."""

from ..declaration import ProviderDeclaration

DECLARATION = ProviderDeclaration(
    senders={"fcm": ("push", "FcmProvider")},
    endpoint="FCM_API_BASE_URL",
    test_mode_endpoints=("TEST_MODE_FCM_API_BASE_URL",),
    test_mode_service_account="TEST_MODE_FCM_SERVICE_ACCOUNT_FILE",
    real_hosts=("googleapis.com", "google.com"),
    rate_limits={"fcm": 1000},
)
