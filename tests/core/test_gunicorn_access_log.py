"""The access log line computes only the atoms its format names (notifyhub/gunicorn_support.py
LazyAtoms): the line is the one gunicorn's SafeAtoms over every (masked) atom would write."""

from __future__ import annotations

import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.glogging import SafeAtoms

from notifyhub.gunicorn_support import LazyAtoms, MaskedAccessLogger

EVERY_ATOM = " ".join(f"%({k})s" for k in "hlutrsmUqHbBfaTDMLp")
FORMATS = [
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',  # gunicorn's default
    EVERY_ATOM,
    "%({x-request-id}o)s %({X-Request-Id}O)s %({user-agent}i)s %({Referer}i)s %({raw_uri}e)s "
    "%({PATH_INFO}e)s %({query_string}e)s %({http_referer}e)s %({missing}i)s %(nothing)s "
    "%({accept}i)s",
]


def request(path: str = "/api/v1/recipients/jane@example.com",
            query: str = "email=jane@example.com&page=2") -> tuple[Any, Any, dict[str, Any], Any]:
    environ = {
        "REQUEST_METHOD": "GET", "RAW_URI": f"{path}?{query}", "PATH_INFO": path,
        "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.7",
        "HTTP_USER_AGENT": 'curl/8 "quoted"', "HTTP_REFERER": f"https://app.example.com{path}?{query}",
        "HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz", "wsgi.url_scheme": "http",
    }
    req = SimpleNamespace(headers=[("USER-AGENT", 'curl/8 "quoted"'), ("ACCEPT", "a"),
                                   ("ACCEPT", "b"), ("REFERER", environ["HTTP_REFERER"])])
    resp = SimpleNamespace(status="200 OK", sent=1234,
                           headers=[("Content-Type", "application/json"), ("X-Request-Id", "r1")])
    return resp, req, environ, datetime.timedelta(seconds=1, microseconds=2345)


@pytest.fixture
def logger(tmp_path: Path) -> MaskedAccessLogger:
    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    log = MaskedAccessLogger(cfg)
    log.now = lambda: "[07/Dec/2026:06:00:00 +0000]"  # type: ignore[method-assign]
    return log


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("query", ["email=jane@example.com&page=2", ""])
def test_the_line_gunicorns_atoms_would_write(logger: MaskedAccessLogger, fmt: str,
                                              query: str) -> None:
    resp, req, environ, took = request(query=query)
    expected = fmt % SafeAtoms(logger.atoms(resp, req, environ, took))
    assert fmt % LazyAtoms(logger, resp, req, environ, took) == expected
    assert "jane@example.com" not in expected


def test_access_writes_the_masked_line(logger: MaskedAccessLogger, tmp_path: Path) -> None:
    logger.cfg.set("access_log_format", FORMATS[0])
    resp, req, environ, took = request()
    logger.access(resp, req, environ, took)
    for handler in logger.access_log.handlers:
        handler.flush()
    line = (tmp_path / "access.log").read_text().strip()
    assert line == FORMATS[0] % SafeAtoms(logger.atoms(resp, req, environ, took))
    assert line.startswith('10.0.0.7 - user [07/Dec/2026:06:00:00 +0000] "GET /api/v1/recipients/')
