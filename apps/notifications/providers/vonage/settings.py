"""Vonage Messages API (SMS and WhatsApp, one account). Values: VONAGE_* in
notifyhub/settings/base.py."""

from ..declaration import ProviderDeclaration

DECLARATION = ProviderDeclaration(
    senders={"vonage_sms": ("sms", "VonageSmsProvider"),
             "vonage_whatsapp": ("whatsapp", "VonageWhatsAppProvider")},
    credentials=("VONAGE_API_SECRET", "VONAGE_SIGNATURE_SECRET"),
    endpoint="VONAGE_API_BASE_URL",
    test_mode_endpoints=("TEST_MODE_VONAGE_API_BASE_URL",),
    real_hosts=("nexmo.com", "vonage.com"),
    rate_limits={"vonage_sms": 30, "vonage_whatsapp": 80},
    receipts=True,
)
