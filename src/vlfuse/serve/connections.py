"""Connection guards for uvicorn: read timeouts for slow or half-open clients and a limit on open connections.

uvicorn closes idle keep-alive connections but waits forever for a request whose headers or body trickle in, so a
few thousand slow clients can hold every socket. `guarded_protocol` wraps uvicorn's httptools protocol:

- a request's headers must arrive within `header_timeout_s` of its first byte (of the connection, for the first
  request), its body within `body_timeout_s` after the headers; otherwise the client gets a 408 and is closed;
- at `max_connections` open connections, a new one first takes the place of the connection that has waited longest
  (at least `EVICT_AFTER_S`) for its request headers — that one gets a 408 — so a flood of slow clients cannot lock
  out a client that sends its request at once; when no connection is stuck in its headers, the new one gets a 503
  with Retry-After and is closed, and the connections already open keep being served.

`uvicorn_config` builds the uvicorn settings `vlfuse serve` runs with (and the tests' live server too).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vlfuse.serve.errors import error_body
from vlfuse.serve.limits import ServeLimits

log = logging.getLogger(__name__)

EVICT_AFTER_S = 1.0  # at the connection limit, a connection this long in its headers gives way to a new one


def _raw_response(status: str, code: str, message: str, extra: bytes = b"") -> bytes:
    payload = json.dumps(error_body(code, message)).encode()
    head = (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n"
            "connection: close\r\n").encode()  # fmt: skip
    return head + extra + b"\r\n" + payload


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read timeouts and a connection limit (set by `guarded_protocol`)."""

    header_timeout_s = 10.0
    body_timeout_s = 30.0
    max_connections = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._read_timer: asyncio.TimerHandle | None = None
        self._headers_since: float | None = None
        if len(self.connections) >= self.max_connections and not self._evict_a_stuck_connection():
            message = f"the server holds its limit of {self.max_connections:,} open connections; try again shortly"
            transport.write(_raw_response("503 Service Unavailable", "too_many_connections", message,
                                          b"retry-after: 1\r\n"))  # fmt: skip
            transport.close()
            self.transport = transport
            self._refused = True
            return
        self._refused = False
        super().connection_made(transport)
        self._arm(self.header_timeout_s, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._read_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm(self.header_timeout_s, "headers")  # a new request on a kept-alive connection
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._headers_since = None
        super().on_headers_complete()
        if not self.parser.should_upgrade():
            self._arm(self.body_timeout_s, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # ------------------------------------------------------------------ timers
    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        if what == "headers":
            self._headers_since = self.loop.time()
        self._read_timer = self.loop.call_later(seconds, self._timed_out, what, seconds)

    def _evict_a_stuck_connection(self) -> bool:
        """Time out the open connection that has waited longest for its request headers, if any has waited at least
        `EVICT_AFTER_S`; returns whether one was."""
        now = self.loop.time()
        waiting = [(getattr(c, "_headers_since", None), c) for c in self.connections]
        stuck = [(since, c) for since, c in waiting if since is not None and now - since >= EVICT_AFTER_S]
        if not stuck:
            return False
        since, oldest = min(stuck, key=lambda pair: pair[0])
        oldest._timed_out("headers", round(now - since, 1))
        self.connections.discard(oldest)  # its connection_lost comes later; the place is free now
        return True

    def _disarm(self) -> None:
        timer = getattr(self, "_read_timer", None)
        if timer is not None:
            timer.cancel()
            self._read_timer = None

    def _timed_out(self, what: str, seconds: float) -> None:
        self._disarm()
        self._headers_since = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            message = f"the request's {what} did not arrive within {seconds:g} s"
            self.transport.write(_raw_response("408 Request Timeout", "request_timeout", message))
        self.transport.close()


def guarded_protocol(limits: ServeLimits) -> type[GuardedHttpToolsProtocol]:
    """A protocol class with `limits`' timeouts and connection limit."""
    return type("VlfuseHttpProtocol", (GuardedHttpToolsProtocol,), {
        "header_timeout_s": limits.header_timeout_s, "body_timeout_s": limits.body_timeout_s,
        "max_connections": limits.max_connections,
    })  # fmt: skip


def uvicorn_config(app: Any, limits: ServeLimits, **options: Any):
    """uvicorn.Config for `app` with the guards of `limits` (host, port, log_level … in `options`)."""
    import uvicorn

    return uvicorn.Config(app, http=guarded_protocol(limits), timeout_keep_alive=limits.keep_alive_s, **options)
