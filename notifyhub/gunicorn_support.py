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
import socket
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

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
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
