"""Refuse request bodies over a size with 413, before anything parses them.

A body that says its size (``Content-Length``) is refused before a byte of it is read; a
chunked body (no length given) is counted while the app reads it, and the read stops at
the first chunk past the limit. Either way the client gets 413 and the route never sees
the body: a 30 MB JSON document is not read whole, then parsed, then refused.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised into the app by ``receive`` once a chunked body passes the limit."""


class BodyLimit:
    """ASGI middleware: 413 for an HTTP request whose body is over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await self.refuse(send)
            return
        received = 0
        too_large = started = False

        async def capped_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not too_large:  # the app's answer to a read that failed is replaced by the 413
                started = True
                await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except BodyTooLarge:
            pass
        if too_large and not started:
            await self.refuse(send)

    async def refuse(self, send: Send) -> None:
        detail = f"request body over {self.max_bytes:,} bytes (the server's api.max_body_bytes)"
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
