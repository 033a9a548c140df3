"""Provider sandbox for NotifyHub.

A standalone aiohttp process that impersonates third-party delivery providers
(currently SendGrid's v3 Mail Send API), records every message it accepts and
calls NotifyHub back with provider-style signed webhook events.

This package must never import Django: it runs as its own process
(``python -m apps.sandbox serve``) in development, tests and benchmarks.
"""

__all__: list[str] = []
