"""Provider sandbox for NotifyHub.

A standalone aiohttp process whose emulators (`*Emulator`) impersonate delivery providers
(SendGrid v3 Mail Send, Twilio Messages and the Vonage Messages API for SMS and WhatsApp,
FCM HTTP v1 with its OAuth token endpoint, and an SMTP server on the same event loop),
records every message it accepts and calls NotifyHub back with provider-style signed
webhooks. It lives outside `apps/`: it is a separate process, not a Django app.

This package must never import Django: it runs as its own process
(``python -m sandbox serve``) in development, tests and benchmarks.
"""

__all__: list[str] = []
