"""Provider sandbox for NotifyHub.

A standalone aiohttp process that impersonates third-party delivery providers
(SendGrid v3 Mail Send, Twilio Messages for SMS and WhatsApp, FCM HTTP v1 with its
OAuth token endpoint, and an SMTP server on the same event loop), records every
message it accepts and calls NotifyHub back with provider-style signed webhooks.

This package must never import Django: it runs as its own process
(``python -m apps.sandbox serve``) in development, tests and benchmarks.
"""

__all__: list[str] = []
