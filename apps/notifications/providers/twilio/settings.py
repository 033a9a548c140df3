"""Twilio Messages API (SMS and WhatsApp, one account). Values: TWILIO_* in
notifyhub/settings/base.py."""

from ..declaration import ProviderDeclaration

DECLARATION = ProviderDeclaration(
    senders={"twilio_sms": ("sms", "TwilioSmsProvider"),
             "twilio_whatsapp": ("whatsapp", "TwilioWhatsAppProvider")},
    credentials=("TWILIO_AUTH_TOKEN",),
    endpoint="TWILIO_API_BASE_URL",
    test_mode_endpoints=("TEST_MODE_TWILIO_API_BASE_URL",),
    real_hosts=("twilio.com",),
    rate_limits={"twilio_sms": 100, "twilio_whatsapp": 80},
    receipts=True,
)
