"""SendGrid (email), v3 Mail Send. Values: SENDGRID_* in notifyhub/settings/base.py."""

from ..declaration import ProviderDeclaration

DECLARATION = ProviderDeclaration(
    senders={"sendgrid": ("email", "SendGridProvider")},
    credentials=("SENDGRID_API_KEY",),
    endpoint="SENDGRID_API_HOST",
    test_mode_endpoints=("TEST_MODE_SENDGRID_API_HOST",),
    real_hosts=("sendgrid.com", "sendgrid.net"),
    rate_limits={"sendgrid": 500},
    receipts=True,
)
