"""Call an ASGI app in process, as an HTTP server would: the body in chunks, every message
the app sends kept. No HTTP client library needed, and a test sees how much of a body the
app read (``Answer.chunks_read``), which a client over a socket cannot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    chunks_read: int

    def json(self) -> Any:
        """The body as strict JSON (no NaN or Infinity literals)."""

        def refuse(literal: str) -> None:
            raise ValueError(f"not strict JSON: {literal}")

        return json.loads(self.body, parse_constant=refuse)


def call(
    app: Any,
    method: str,
    path: str,
    chunks: Sequence[bytes] = (),
    headers: dict[str, str] | None = None,
) -> Answer:
    """Send a request whose body arrives as ``chunks`` (none: an empty body)."""
    return asyncio.run(_call(app, method, path, list(chunks), headers or {}))


def post_json(app: Any, path: str, body: Any, chunked: bool = False) -> Answer:
    """POST ``body`` as Python's json writes it (NaN and Infinity as bare literals, like
    any client built on it), with a Content-Length, or chunked without one."""
    data = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if chunked:
        chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
        return call(app, "POST", path, chunks, headers)
    headers["content-length"] = str(len(data))
    return call(app, "POST", path, [data], headers)


async def _call(
    app: Any, method: str, path: str, chunks: list[bytes], headers: dict[str, str]
) -> Answer:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": k < len(chunks) - 1}
        for k, chunk in enumerate(chunks)
    ] or [{"type": "http.request", "body": b"", "more_body": False}]
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read < len(messages):
            read += 1
            return messages[read - 1]
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    head = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return Answer(start["status"], head, body, read)
