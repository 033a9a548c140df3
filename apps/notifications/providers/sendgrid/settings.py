"""SendGrid (email), v3 Mail Send. Its settings are declared here, nowhere else: SENDGRID_<SUFFIX>
from a settings module or the environment, else these defaults (providers/conf.py)."""

from ..declaration import REQUIRED, ProviderDeclaration, Value, sandbox_url

DECLARATION = ProviderDeclaration(
    senders={"sendgrid": ("email", "SendGridProvider")},
    credentials=("SENDGRID_API_KEY",),
    endpoint="SENDGRID_API_HOST",
    test_mode_endpoints=("TEST_MODE_SENDGRID_API_HOST",),
    real_hosts=("sendgrid.com", "sendgrid.net"),
    rate_limits={"sendgrid": 500},
    receipts=True,
    values={
        "API_KEY": Value("sandbox-sendgrid-key", production=REQUIRED,
                         test_mode="sandbox-sendgrid-key"),
        "API_HOST": Value("http://127.0.0.1:8025", production="https://api.sendgrid.com",
                          test_mode=sandbox_url),
        "TIMEOUT_SECONDS": Value(10.0),
        # Base64 DER public key from SendGrid's "Signed Event Webhook" settings; the test-mode
        # copy verifies events posted to /api/v1/webhooks/test/sendgrid (locally the one
        # sandbox signs live and test events alike).
        "WEBHOOK_PUBLIC_KEY": Value("", production=REQUIRED, test_mode=Value(
            lambda get: get("SENDGRID_WEBHOOK_PUBLIC_KEY"), production="")),
    },
)
