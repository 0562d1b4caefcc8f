"""A minimal emulated Postmark API for benchmarks: accepts everything, keeps only Message-IDs.

tests/esp_emulator.py (a ThreadingHTTPServer, recording whole requests) tops out far below
what one sender reaches, so measuring with it would mostly measure it. This one speaks just
enough HTTP/1.1 (keep-alive, Content-Length bodies) for ``POST /email`` and
``POST /email/batch``, answers Postmark's documented JSON (``To``, ``SubmittedAt``,
``MessageID``, ``ErrorCode``, ``Message``), runs one asyncio server per process on a shared
port (SO_REUSEPORT), and appends each accepted message's Message-ID header to a per-process
file, flushed when the process stops. Both the raw loop and the pipeline post to it.

    api = FastEsp(processes=2).start(); ...; ids = api.stop()  # list of Message-IDs
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.fastsink import ServerProcesses, serve_until_stopped

TOKEN = "bench-postmark-token"
_SUBMITTED = "2026-01-01T00:00:00Z"


def _message_id(message: dict[str, Any]) -> str:
    for header in message.get("Headers") or ():
        if str(header.get("Name", "")).lower() == "message-id":
            return str(header.get("Value", ""))
    return "<none>"


class _Connection(asyncio.Protocol):
    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (head_end := self.buffer.find(b"\r\n\r\n")) >= 0:
            request_line, *lines = self.buffer[:head_end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            end = head_end + 4 + int(headers.get("content-length", 0))
            if len(self.buffer) < end:
                return
            body, self.buffer = self.buffer[head_end + 4 : end], self.buffer[end:]
            path = request_line.split(" ")[1] if " " in request_line else ""
            self._request(path, headers, body)

    def _request(self, path: str, headers: dict[str, str], body: bytes) -> None:
        if headers.get("x-postmark-server-token") != TOKEN:
            self._answer(401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."})
        elif path == "/email":
            self._answer(200, self._accept(json.loads(body)))
        elif path == "/email/batch":
            self._answer(200, [self._accept(message) for message in json.loads(body)])
        else:
            self._answer(404, {"Message": "not found"})

    def _accept(self, message: dict[str, Any]) -> dict[str, Any]:
        self.ids.append(_message_id(message))
        return {
            "To": message.get("To", ""),
            "SubmittedAt": _SUBMITTED,
            "MessageID": str(uuid.uuid4()),
            "ErrorCode": 0,
            "Message": "OK",
        }

    def _answer(self, status: int, body: object) -> None:
        assert self.transport is not None
        data = json.dumps(body).encode()
        self.transport.write(
            f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )


def _serve(ports: tuple[int, int], out: str, ready: Any) -> None:
    ids: list[str] = []
    serve_until_stopped(ports, lambda: _Connection(ids), ready)
    Path(out).write_text("".join(f"{one}\n" for one in ids))


def free_port() -> int:
    """A free port of the benchmark's range (18100-18199), else any free port."""
    for port in range(18150, 18200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FastEsp(ServerProcesses):
    what = "the emulated API"
    prefix = "fastesp-"

    def __init__(self, *, processes: int = 2, port: int = 0) -> None:
        super().__init__(processes=processes, port=port or free_port())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def serve(self) -> Callable[[tuple[int, int], str, Any], None]:
        return _serve
