"""Firebase Cloud Messaging HTTP v1 (push) through pyfcm: a service-account JSON (its token_uri
may point at the sandbox). No receipts. Its settings are declared here, nowhere else:
FCM_<SUFFIX> from a settings module or the environment, else these defaults (providers/conf.py).
TEST_MODE_FCM_SERVICE_ACCOUNT_FILE: a service account whose token_uri is the sandbox's
(`python -m sandbox fcm-service-account`); empty: test keys cannot send push."""

from ..declaration import ProviderDeclaration, Value, sandbox_url

DECLARATION = ProviderDeclaration(
    senders={"fcm": ("push", "FcmProvider")},
    endpoint="FCM_API_BASE_URL",
    test_mode_endpoints=("TEST_MODE_FCM_API_BASE_URL",),
    test_mode_service_account="TEST_MODE_FCM_SERVICE_ACCOUNT_FILE",
    real_hosts=("googleapis.com", "google.com"),
    rate_limits={"fcm": 1000},
    values={
        "SERVICE_ACCOUNT_FILE": Value("", test_mode=""),
        "PROJECT_ID": Value("", test_mode=""),
        "API_BASE_URL": Value("http://127.0.0.1:8025", production="https://fcm.googleapis.com",
                              test_mode=sandbox_url),
        "TIMEOUT_SECONDS": Value(10.0),
    },
)
