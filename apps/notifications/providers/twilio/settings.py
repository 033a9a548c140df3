"""Twilio Messages API (SMS and WhatsApp, one account). Its settings are declared here, nowhere
else: TWILIO_<SUFFIX> from a settings module or the environment, else these defaults
(providers/conf.py). TWILIO_API_BASE_URL redirects the SDK (the sandbox locally)."""

from ..declaration import ProviderDeclaration, Value, sandbox_url

SANDBOX_ACCOUNT_SID = "AC" + "0" * 32

DECLARATION = ProviderDeclaration(
    senders={"twilio_sms": ("sms", "TwilioSmsProvider"),
             "twilio_whatsapp": ("whatsapp", "TwilioWhatsAppProvider")},
    credentials=("TWILIO_AUTH_TOKEN",),
    endpoint="TWILIO_API_BASE_URL",
    test_mode_endpoints=("TEST_MODE_TWILIO_API_BASE_URL",),
    real_hosts=("twilio.com",),
    rate_limits={"twilio_sms": 100, "twilio_whatsapp": 80},
    receipts=True,
    values={
        "ACCOUNT_SID": Value(SANDBOX_ACCOUNT_SID, production="", test_mode=SANDBOX_ACCOUNT_SID),
        "AUTH_TOKEN": Value("sandbox-twilio-token", production="",
                            test_mode="sandbox-twilio-token"),
        "API_BASE_URL": Value("http://127.0.0.1:8025", production="https://api.twilio.com",
                              test_mode=sandbox_url),
        "SMS_FROM": Value("+15005550006"),
        "WHATSAPP_FROM": Value("+15005550006"),
        "TIMEOUT_SECONDS": Value(10.0),
    },
)
