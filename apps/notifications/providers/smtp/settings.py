"""Any SMTP server (email failover; the sandbox runs one on 2525). Values: SMTP_* in
notifyhub/settings/base.py. No receipts."""

from ..declaration import ProviderDeclaration

DECLARATION = ProviderDeclaration(
    senders={"smtp": ("email", "SmtpProvider")},
    endpoint="SMTP_HOST",
    test_mode_endpoints=("TEST_MODE_SMTP_HOST",),
    rate_limits={"smtp": 50},
)
