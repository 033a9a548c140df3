"""Keep-alive HTTP for the SendGrid SDK.

The SDK (`python_http_client`) opens every request with a fresh `urllib` opener, so each send
pays a new TCP (and, against the real API, TLS) connection. `KeepAliveClient` is the SDK's own
client with its one documented hook, `_make_request`, sending through a persistent
`http.client` connection of the calling thread instead. Everything else (URL building,
headers, the `Response` object, the SDK's HTTPError classes) stays the SDK's.

Safety: a connection is reused only after checking that the server has not closed it (as
urllib3 does); a request is never re-sent by this module. A failure after the request left
is reported exactly as urllib would report it (URLError / TimeoutError), and the caller's retry
policy decides, as before.
"""

from __future__ import annotations

import http.client
import io
import json
import select
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from python_http_client import Client
from python_http_client.client import Response
from python_http_client.exceptions import handle_error

from apps.core import tracing

_local = threading.local()


class _Reply:
    """What `python_http_client.Response` reads from a urllib response."""

    def __init__(self, status: int, body: bytes, headers: http.client.HTTPMessage) -> None:
        self._status, self._body, self._headers = status, body, headers

    def getcode(self) -> int:
        return self._status

    def read(self) -> bytes:
        return self._body

    def info(self) -> http.client.HTTPMessage:
        return self._headers


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when the server closed (or wrote to) an idle connection: it cannot be reused."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _connection(scheme: str, netloc: str, timeout: float | None) -> http.client.HTTPConnection:
    pool: dict[tuple[str, str], http.client.HTTPConnection] = _local.__dict__.setdefault("pool", {})
    conn = pool.get((scheme, netloc))
    if conn is not None and conn.sock is not None and _dropped(conn):
        conn.close()
    if conn is None:
        cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = cls(netloc, timeout=timeout)
        pool[(scheme, netloc)] = conn
    conn.timeout = timeout
    if conn.sock is not None:
        conn.sock.settimeout(timeout)
    return conn


def _forget(scheme: str, netloc: str) -> None:
    pool: dict[tuple[str, str], http.client.HTTPConnection] = _local.__dict__.get("pool", {})
    conn = pool.pop((scheme, netloc), None)
    if conn is not None:
        conn.close()


def send(request: urllib.request.Request, timeout: float | None) -> _Reply:
    """Sends a urllib Request on this thread's connection to its host; raises as urllib's
    default opener does (HTTPError for a non-2xx answer, URLError for network trouble,
    TimeoutError)."""
    url = urlsplit(request.full_url)
    path = url.path or "/"
    if url.query:
        path = f"{path}?{url.query}"
    conn = _connection(url.scheme, url.netloc, timeout)
    headers = dict(request.header_items())
    # No OpenTelemetry instrumentation sees http.client: the client span is ours (tracing on).
    with tracing.http_client_span(request.get_method(), request.full_url) as record_status:
        try:
            conn.request(request.get_method(), path, body=request.data, headers=headers)
            answer = conn.getresponse()
            body = answer.read()
        except TimeoutError:
            _forget(url.scheme, url.netloc)
            raise
        except (OSError, http.client.HTTPException) as exc:
            _forget(url.scheme, url.netloc)
            raise urllib.error.URLError(exc) from exc
        record_status(answer.status)
    if answer.will_close:
        _forget(url.scheme, url.netloc)
    if not 200 <= answer.status < 300:
        raise urllib.error.HTTPError(request.full_url, answer.status, answer.reason,
                                     answer.headers, io.BytesIO(body))
    return _Reply(answer.status, body, answer.headers)


class KeepAliveClient(Client):  # type: ignore[misc]
    """`python_http_client.Client` whose requests reuse the calling thread's connection."""

    def _build_client(self, name: Any = None) -> KeepAliveClient:
        url_path = [*self._url_path, name] if name else self._url_path
        return KeepAliveClient(host=self.host, version=self._version,
                               request_headers=self.request_headers, url_path=url_path,
                               append_slash=self.append_slash, timeout=self.timeout)

    def __getattr__(self, name: str) -> Any:
        """The SDK's method call (`client.mail.send.post(...)`) without the urllib opener it
        would build for every request; the request is the one the SDK builds."""
        if name not in self.methods:
            return super().__getattr__(name)
        method = name.upper()

        def http_request(request_body: Any = None, query_params: Any = None,
                         request_headers: Any = None, timeout: float | None = None,
                         **_: Any) -> Response:
            if request_headers:
                self._update_headers(request_headers)
            if request_body is None:
                data = None
            elif self.request_headers.get("Content-Type", "application/json") != "application/json":
                data = request_body.encode("utf-8")
            else:
                self.request_headers.setdefault("Content-Type", "application/json")
                data = json.dumps(request_body).encode("utf-8")
            request = urllib.request.Request(self._build_url(query_params),  # noqa: S310 - the configured API host
                                             headers=self.request_headers, data=data,
                                             method=method)
            return Response(self._make_request(None, request, timeout=timeout))

        return http_request

    def _make_request(self, opener: Any, request: urllib.request.Request,
                      timeout: float | None = None) -> _Reply:
        try:
            return send(request, timeout or self.timeout)
        except urllib.error.HTTPError as err:
            exc = handle_error(err)
            exc.__cause__ = None
            raise exc from None
