"""One webhook POST: resolve and check the host (ssrf.py), then connect to the checked address
itself, with the URL's host name in the `Host` header and, for https, in SNI and the
certificate check. Redirects are never followed; one attempt, no retries here (the schedule
lives in delivery.py)."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import parse_url

from . import ssrf

USER_AGENT = "NotifyHub-Webhooks/1.0"
RESPONSE_BODY_LIMIT = 1000


@dataclass(frozen=True)
class HttpResult:
    status_code: int | None
    duration_ms: int
    error_code: str = ""
    error: str = ""
    body: str = ""

    @property
    def succeeded(self) -> bool:
        return not self.error_code and self.status_code is not None and 200 <= self.status_code < 300


def _host_header(host: str, port: int, default_port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default_port else f"{shown}:{port}"


def post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> HttpResult:
    started = time.monotonic()

    def result(status: int | None = None, code: str = "", error: str = "", text: str = "") -> HttpResult:
        return HttpResult(status, int((time.monotonic() - started) * 1000), code, error[:500], text)

    parsed = parse_url(url)
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("http", "https") or not parsed.host:
        return result(code="invalid_url", error="Only absolute http and https URLs are sent to.")
    host = parsed.host.strip("[]")
    default_port = 443 if scheme == "https" else 80
    port = parsed.port or default_port
    try:
        addresses = ssrf.checked_addresses(host, port)
    except ssrf.BlockedAddress as exc:
        return result(code="blocked_address", error=f"Refused: {exc}.")
    except ssrf.ResolutionError as exc:
        return result(code="dns_error", error=str(exc))

    request_headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **headers,
        "Host": _host_header(host, port, default_port),
    }
    path = parsed.request_uri or "/"
    timeouts = urllib3.Timeout(total=timeout)
    is_name = ssrf.host_literal(host) is None
    last_error = ""
    # Try each checked address in the resolver's order until one accepts the connection
    # (e.g. ::1 then 127.0.0.1 for localhost); nothing has been sent before a connect succeeds.
    for address in addresses:
        pool: urllib3.HTTPConnectionPool
        if scheme == "https":
            server_name = host if is_name else None
            pool = urllib3.HTTPSConnectionPool(
                str(address), port, timeout=timeouts, retries=False, maxsize=1,
                server_hostname=server_name, assert_hostname=host if is_name else str(address),
            )
        else:
            pool = urllib3.HTTPConnectionPool(str(address), port, timeout=timeouts, retries=False,
                                              maxsize=1)
        with pool:
            try:
                response = pool.urlopen(
                    "POST", path, body=body, headers=request_headers, redirect=False,
                    retries=False, preload_content=False, assert_same_host=False,
                )
            except (NewConnectionError, ConnectTimeoutError) as exc:
                last_error = f"{_shown(address)}: {_reason(exc)}"
                if isinstance(exc, ConnectTimeoutError) and not isinstance(exc, NewConnectionError):
                    return result(code="timeout", error=f"Connect timed out ({last_error}).")
                continue
            except ReadTimeoutError:
                return result(code="timeout", error=f"No answer within {timeout:g} s.")
            except SSLError as exc:
                return result(code="tls_error", error=_reason(exc))
            except (ProtocolError, HTTPError) as exc:
                return result(code="connection_error", error=_reason(exc))
            try:
                text = response.read(RESPONSE_BODY_LIMIT, decode_content=True)
            except (ProtocolError, HTTPError):
                text = b""
            finally:
                response.close()
            status = response.status
            snippet = text.decode("utf-8", "replace")[:RESPONSE_BODY_LIMIT]
            if 300 <= status < 400:
                location = response.headers.get("Location", "")
                return result(status, "redirect", f"Redirect to {location[:300]!r} not followed.",
                              snippet)
            if not 200 <= status < 300:
                return result(status, f"http_{status}", f"The endpoint answered {status}.", snippet)
            return result(status, text=snippet)
    return result(code="connection_error", error=f"Could not connect ({last_error}).")


def _shown(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or exc)[:300]
