"""The HTTP boundary's guards: a body size limit, and error messages cut to one line.

>>> one_line("two\\n  lines")
'two lines'
>>> validation_message([{"loc": ("body", "k"), "msg": "Input should be greater than or equal to 1"}])
'k: Input should be greater than or equal to 1'
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

__all__ = ["BodyLimit", "HostCheck", "one_line", "validation_message"]


def one_line(message) -> str:
    return " ".join(str(message).split())


def validation_message(errors: list[dict]) -> str:
    """pydantic's errors as one line: ``field: problem; field: problem`` (the first three)."""
    parts = []
    for e in errors[:3]:
        loc = ".".join(str(p) for p in e.get("loc", ())[1:])
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        if e.get("type") == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return one_line("; ".join(parts) + more)


class BodyLimit:
    """ASGI middleware: a request whose body is over ``max_body`` bytes gets 413 (checked on the
    declared length, and counted while a body without one streams in). The body is read here, then
    handed to the app whole."""

    def __init__(self, app, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return await self._too_large(send)
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body:
                return await self._too_large(send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(chunks), False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send) -> None:
        body = json.dumps({"error": f"request body over the limit of {self.max_body} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class HostCheck:
    """ASGI middleware: a request whose ``Host`` header names none of ``hosts`` gets 400. A server on
    loopback answers only to loopback names, so a web page whose own name was re-pointed at 127.0.0.1
    (DNS rebinding) cannot read or write through a visitor's browser."""

    def __init__(self, app, hosts: tuple[str, ...]):
        self.app, self.hosts = app, {h.lower().strip("[]") for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            try:  # lower case, port and IPv6 brackets dropped; a user part or path is no Host a browser sends
                name = None if any(c in host for c in "@/\\?#") else urlsplit(f"//{host}").hostname
            except ValueError:  # a malformed bracket
                name = None
            if name not in self.hosts:
                body = json.dumps({"error": f"unknown Host {host!r}: this server answers to "
                                            f"{', '.join(sorted(self.hosts))}"}).encode()
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
