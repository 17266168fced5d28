"""Request deadlines against slow clients (slowloris): the request line and headers, then the body, must arrive
within bounded times, or the connection is answered 408 and closed.

uvicorn bounds only the idle time between requests on a kept-alive connection (timeout_keep_alive); a client
that opens a connection and sends its headers a byte at a time, or never finishes its body, would hold the
connection (a socket, a parser, buffers) for as long as it likes. The header deadline lives in the protocol
(the ASGI app sees a request only once its headers are complete); the body deadline is in http.py's body read.
"""

from __future__ import annotations

from typing import Any

HEADER_TIMEOUT_S = 10.0  # --header-timeout-s: request line + headers, from the connection or the first byte
BODY_TIMEOUT_S = 60.0  # --body-timeout-s: the whole body, from the end of the headers
# After a 408 the server stops sending (FIN) and discards what the client still sends for this long before it
# closes: closing at once with unread data would reset the connection and the client could miss its 408.
TIMEOUT_LINGER_S = 2.0


def _timeout_response(message: str) -> bytes:
    body = b'{"error": "' + message.encode() + b'"}'
    head = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


def protocol_class(header_timeout_s: float) -> Any:
    """uvicorn's httptools protocol with a header deadline: armed when a connection opens and when a new
    request's first byte arrives, cleared when its headers are complete; on expiry the client gets a 408,
    the server's side is shut (FIN) and the connection closed TIMEOUT_LINGER_S later. 0 turns it off."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    expired = _timeout_response(
        f"request headers not received within {header_timeout_s:g} s (--header-timeout-s)"
    )

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _header_timer = None
        _expired = False

        def data_received(self, data: bytes) -> None:
            if not self._expired:  # after the 408, what a slow client still sends is discarded
                super().data_received(data)

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if header_timeout_s > 0 and self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            self._expired = True
            self.transport.write(expired)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(TIMEOUT_LINGER_S, self.transport.close)

    return HeaderDeadlineProtocol
