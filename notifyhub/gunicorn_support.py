"""gunicorn pieces configured in notifyhub/gunicorn.conf.py.

* `JsonErrorThreadWorker`: errors gunicorn answers itself, before Django sees the request (a
  NUL or another invalid byte in a header, an over-long request line, a bad chunked body …),
  are written in the API's error format (`{"error": {"code", "message", "fields"}}`) instead of
  gunicorn's HTML page.
* `MaskedAccessLogger`: the access log writes URLs and referers masked
  (apps.core.logging.mask_url: no query values, no external ids or addresses in paths), and
  the error log goes through the PII filter. With the Django setting LOG_FORMAT=json (the
  production default) both write one JSON object per line, as Django's own logging does."""

from __future__ import annotations

import json
import os
import socket
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

from gunicorn import util
from gunicorn.glogging import Logger
from gunicorn.workers.gthread import ThreadWorker

from apps.core.logging import JsonLineFormatter, RedactPIIURLFilter, mask_url

ERROR_CODES = {400: "malformed_request", 403: "forbidden", 414: "uri_too_long",
               417: "expectation_failed", 431: "headers_too_large", 500: "server_error",
               501: "not_implemented"}


def json_error_response(status_int: int, reason: str, mesg: str) -> bytes:
    """The HTTP response gunicorn sends for a request it could not hand to the application."""
    code = ERROR_CODES.get(status_int, "malformed_request" if status_int < 500 else "server_error")
    message = f"{reason}: {mesg}" if mesg else reason
    body = json.dumps({"error": {"code": code, "message": message[:300], "fields": {}}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    util.write_nonblock(sock, json_error_response(status_int, reason, mesg))


class JsonErrorThreadWorker(ThreadWorker):
    """gunicorn's threaded worker (what `threads > 1` selects) answering its own errors in JSON."""

    def init_process(self) -> None:
        # Worker.handle_error writes its page with util.write_error; this process is the worker
        # alone, so the replacement holds for every thread.
        util.write_error = write_json_error
        super().init_process()


_URL_ATOMS = ("r", "U", "q", "f", "{referer}i", "{raw_uri}e", "{path_info}e", "{query_string}e",
              "{http_referer}e")


def json_logs() -> bool:
    """The Django settings' LOG_FORMAT (read without setting Django up); text if unreadable."""
    try:
        from django.conf import settings

        return bool(settings.LOG_FORMAT == "json")
    except Exception:  # noqa: BLE001 - no settings module: gunicorn's own text lines
        return False


class MaskedAccessLogger(Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.addFilter(RedactPIIURLFilter())
        if json_logs():
            for handler in [*self.error_log.handlers, *self.access_log.handlers]:
                handler.setFormatter(JsonLineFormatter())

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """gunicorn's access line, with only the atoms its format names computed (gunicorn
        builds them all, every request and response header and environ variable included, and
        copies them once more to escape them: ~8 % of a small API request's CPU)."""
        if not self.access_log_enabled:
            return
        try:
            self.access_log.info(self.cfg.access_log_format,
                                 LazyAtoms(self, resp, req, environ, request_time))
        except Exception:  # noqa: BLE001 - as gunicorn: a bad format never fails a request
            self.error(traceback.format_exc())

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        """Every atom at once (gunicorn's API; `access` computes only those it writes)."""
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["r"] = "{} {} {}".format(environ.get("REQUEST_METHOD", "-"),
                                       mask_url(environ.get("RAW_URI", "")),
                                       environ.get("SERVER_PROTOCOL", "-"))
        atoms["U"] = mask_url(environ.get("PATH_INFO") or "")
        query = environ.get("QUERY_STRING") or ""
        atoms["q"] = mask_url(f"?{query}")[1:] if query else query
        for key in _URL_ATOMS[3:]:
            if isinstance(atoms.get(key), str):
                atoms[key] = mask_url(atoms[key])
        return atoms


def _status(resp: Any) -> Any:
    status = resp.status
    return status.split(None, 1)[0] if isinstance(status, str) else status


def _query(environ: Any) -> str:
    query = environ.get("QUERY_STRING") or ""
    return mask_url(f"?{query}")[1:] if query else query


# gunicorn's atoms (glogging.Logger.atoms), the URL ones masked as MaskedAccessLogger.atoms does.
_ATOMS: dict[str, Any] = {
    "h": lambda a: a.environ.get("REMOTE_ADDR", "-"),
    "l": lambda a: "-",
    "u": lambda a: a.logger._get_user(a.environ) or "-",
    "t": lambda a: a.logger.now(),
    "r": lambda a: "{} {} {}".format(a.environ.get("REQUEST_METHOD", "-"),
                                     mask_url(a.environ.get("RAW_URI", "")),
                                     a.environ.get("SERVER_PROTOCOL", "-")),
    "s": lambda a: _status(a.resp),
    "m": lambda a: a.environ.get("REQUEST_METHOD"),
    "U": lambda a: mask_url(a.environ.get("PATH_INFO") or ""),
    "q": lambda a: _query(a.environ),
    "H": lambda a: a.environ.get("SERVER_PROTOCOL"),
    "b": lambda a: (getattr(a.resp, "sent", None) is not None and str(a.resp.sent)) or "-",
    "B": lambda a: getattr(a.resp, "sent", None),
    "f": lambda a: mask_url(a.environ.get("HTTP_REFERER", "-")),
    "a": lambda a: a.environ.get("HTTP_USER_AGENT", "-"),
    "T": lambda a: a.request_time.seconds,
    "D": lambda a: a.request_time.seconds * 1000000 + a.request_time.microseconds,
    "M": lambda a: a.request_time.seconds * 1000 + int(a.request_time.microseconds / 1000),
    "L": lambda a: f"{a.request_time.seconds:d}.{a.request_time.microseconds:06d}",
    "p": lambda a: f"<{os.getpid()}>",
}


class LazyAtoms(Mapping[str, Any]):
    """What gunicorn's SafeAtoms(MaskedAccessLogger.atoms(...)) gives for each key (`"`
    escaped in strings, `-` for what is missing, `{name}i`/`{name}o`/`{name}e` for request
    headers, response headers and environ variables, case-insensitively), computed when the
    format asks for it."""

    def __init__(self, logger: Any, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        self.logger, self.resp, self.req = logger, resp, req
        self.environ, self.request_time = environ, request_time

    def _value(self, key: str) -> Any:
        compute = _ATOMS.get(key)
        if compute is not None:
            return compute(self)
        key = key.lower()
        if not (key.startswith("{") and len(key) > 3 and key[-2] == "}"):
            return "-"
        name, kind = key[1:-2], key[-1]
        value: Any = _MISSING
        if kind == "e":
            for k, v in self.environ.items():
                if k.lower() == name:
                    value = v
        elif kind in "io":
            headers = (getattr(self.req, "headers", self.req) if kind == "i"
                       else self.resp.headers)
            for k, v in (headers.items() if hasattr(headers, "items") else headers):
                if k.lower() == name:
                    value = v
        if value is _MISSING:
            return "-"
        if key in _URL_ATOMS and isinstance(value, str):
            value = mask_url(value)
        return value

    def __getitem__(self, key: str) -> Any:
        value = self._value(key)
        return value.replace('"', '\\"') if isinstance(value, str) else value

    def __iter__(self) -> Iterator[str]:
        return iter(_ATOMS)

    def __len__(self) -> int:
        return len(_ATOMS)


_MISSING = object()
