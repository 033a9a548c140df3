"""Vonage Messages API (SMS and WhatsApp, one account). Its settings are declared here, nowhere
else: VONAGE_<SUFFIX> from a settings module or the environment, else these defaults
(providers/conf.py). VONAGE_API_BASE_URL redirects the SDK (the sandbox locally; empty:
api.nexmo.com); VONAGE_SIGNATURE_SECRET verifies the signed status and inbound webhooks (JWT
HS256). In production it is unconfigured (not offered) without credentials."""

from ..declaration import ProviderDeclaration, Value, sandbox_url

DECLARATION = ProviderDeclaration(
    senders={"vonage_sms": ("sms", "VonageSmsProvider"),
             "vonage_whatsapp": ("whatsapp", "VonageWhatsAppProvider")},
    credentials=("VONAGE_API_SECRET", "VONAGE_SIGNATURE_SECRET"),
    endpoint="VONAGE_API_BASE_URL",
    test_mode_endpoints=("TEST_MODE_VONAGE_API_BASE_URL",),
    real_hosts=("nexmo.com", "vonage.com"),
    rate_limits={"vonage_sms": 30, "vonage_whatsapp": 80},
    receipts=True,
    values={
        "API_KEY": Value("sandbox-vonage-key", production="", test_mode="sandbox-vonage-key"),
        "API_SECRET": Value("sandbox-vonage-secret", production="",
                            test_mode="sandbox-vonage-secret"),
        "SIGNATURE_SECRET": Value("sandbox-vonage-signature-secret-0000", production="",
                                  test_mode="sandbox-vonage-signature-secret-0000"),
        "API_BASE_URL": Value("http://127.0.0.1:8025", production="", test_mode=sandbox_url),
        "SMS_FROM": Value("+15005550006"),
        "WHATSAPP_FROM": Value("+15005550006"),
        "TIMEOUT_SECONDS": Value(10.0),
    },
)
