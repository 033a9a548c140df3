"""The inbox's live stream: `GET /api/v1/inbox/stream` (Server-Sent Events), served by its own
asyncio process (`python -m apps.stream`, the Procfile's `stream`), not by the API's gunicorn.

- `http.py`    the one request a stream connection makes: its head, parsed with strict limits
- `sse.py`     event framing
- `inbox.py`   what the stream needs from apps/inbox (tokens, CORS, replay, counts), run in a
               small thread pool with short database reads
- `hub.py`     ONE Redis pub/sub connection per process (a pattern subscription) fanning the
               published inbox events out to the process's connections
- `server.py`  the connections: authenticate, subscribe, replay after Last-Event-ID, then live
               events, heartbeats and the slow-consumer cap

docs/inbox.md "Live stream" tells how it works and how to run it."""
