"""Prometheus metrics of the inbox stream process (docs/stream.md "Metrics").

- `notifyhub_stream_connections` (gauge): streams open now (response head written), summed
  over the live stream processes of a host (multiprocess mode `livesum`).
- `notifyhub_stream_events_sent_total{event}`: events written to streams: `message` and
  `counts` (live and replayed), `token_expired` (the last event of a stream whose token
  expired). Heartbeat comments are not counted.
- `notifyhub_stream_slow_consumers_total`: streams cut off because their browser did not read
  (`INBOX_STREAM_MAX_BUFFER_BYTES` unsent, or `INBOX_STREAM_QUEUE_SIZE` events waiting).
- `notifyhub_stream_auth_failures_total{code}`: streams refused before they started: 401 codes
  (`not_authenticated`, `invalid_token`, `token_expired`, `token_lifetime_too_long`) and
  `origin_not_allowed` (403).

Exposed like the workers' metrics (apps/notifications/instrumentation.py): with
`PROMETHEUS_MULTIPROC_DIR` set for the stream process too, the web's `/metrics` shows them
(the process marks itself dead when it stops); on a host without a web process,
`python -m apps.stream --metrics-port P` serves them on their own port."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge(
    "notifyhub_stream_connections", "Inbox streams open now (summed over live stream processes).",
    multiprocess_mode="livesum",
)
EVENTS_SENT = Counter(
    "notifyhub_stream_events_sent", "Events written to inbox streams, by event.", ["event"],
)
SLOW_CONSUMERS = Counter(
    "notifyhub_stream_slow_consumers", "Inbox streams cut off because the browser did not read.",
)
AUTH_FAILURES = Counter(
    "notifyhub_stream_auth_failures", "Inbox streams refused before they started, by error code.",
    ["code"],
)

# Bound once: these are written on every event of every stream.
MESSAGES_SENT = EVENTS_SENT.labels(event="message")
COUNTS_SENT = EVENTS_SENT.labels(event="counts")
TOKEN_EXPIRED_SENT = EVENTS_SENT.labels(event="token_expired")
