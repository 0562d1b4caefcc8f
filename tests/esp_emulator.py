"""A local stand-in for ESP HTTP APIs, speaking their documented formats (Postmark and Mailgun).

It records every request (so tests assert what anymail sent: headers, bodies, tokens) and
every message it accepted, and can be told to misbehave: answer an HTTP status (429, 500, 503)
for the next K calls, refuse connections (``down``) and come back on the same port (``up``),
or refuse an address as Postmark refuses an inactive recipient (ErrorCode 406).

- Postmark: ``POST /email`` and ``POST /email/batch`` with ``X-Postmark-Server-Token``;
  answers ``{"To", "SubmittedAt", "MessageID", "ErrorCode", "Message"}`` (an array of them for
  a batch, HTTP 200 even when some messages are refused; HTTP 422 for a refused single send).
- Mailgun: ``POST /v3/<domain>/messages``, form-encoded or multipart, basic auth ``api:<key>``;
  answers ``{"id": "<...>", "message": "Queued. Thank you."}``; a refused address is HTTP 400.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

POSTMARK_TOKEN = "postmark-test-token"
MAILGUN_KEY = "mailgun-test-key"
PORTS = range(18100, 18200)


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the emulator answered

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Accepted:
    """One message the emulated ESP accepted."""

    esp: str  # "postmark" or "mailgun"
    to: str  # the recipient's address
    message_id: str  # the id the ESP answered
    fields: dict[str, Any]  # the message as sent (Postmark JSON, Mailgun form fields)


@dataclass
class _Faults:
    fail_status: int = 0
    fail_left: int = 0
    inactive: set[str] = field(default_factory=set)
    latency: float = 0.0


class EspEmulator:
    """A threaded HTTP server on a free port of ``PORTS``; ``with EspEmulator() as esp: ...``."""

    def __init__(self, *, port: int = 0, record_requests: bool = True) -> None:
        self.port = port or _free_port()
        self.record_requests = record_requests
        self.requests: list[ApiRequest] = []
        self.accepted: list[Accepted] = []
        self.faults = _Faults()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.last_answer_at = 0.0
        # ``hold``: calls wait at the door (read, not answered) until ``release``.
        self.gate = threading.Event()
        self.gate.set()
        self.held = 0  # calls that waited at the door
        self.held_messages = 0  # the messages in them
        self.held_accept = True
        # Called after each answered call (the call's number, from 1): a test acts mid-send.
        self.after_call: Callable[[int], None] | None = None
        self.calls = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- Where clients point ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def anymail_env(self) -> dict[str, str]:
        """Environment for a worker: anymail's Postmark and Mailgun settings pointing here."""
        return {
            "ANYMAIL_POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN,
            "ANYMAIL_POSTMARK_API_URL": self.url,
            "ANYMAIL_MAILGUN_API_KEY": MAILGUN_KEY,
            "ANYMAIL_MAILGUN_API_URL": f"{self.url}v3",
        }

    def anymail_settings(self) -> dict[str, str]:
        return {name.removeprefix("ANYMAIL_"): value for name, value in self.anymail_env().items()}

    # --- Faults -----------------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 429) -> None:
        """Answers ``status`` to the next ``count`` API calls."""
        with self.lock:
            self.faults.fail_status, self.faults.fail_left = status, count

    def reject(self, address: str) -> None:
        """Refuses ``address`` as an inactive recipient (Postmark 406; Mailgun HTTP 400)."""
        with self.lock:
            self.faults.inactive.add(address.lower())

    def hold(self) -> None:
        """Keeps every new call waiting, unanswered, until ``release``: a call in flight."""
        with self.lock:
            self.held = self.held_messages = 0
        self.gate.clear()

    def release(self, *, accept: bool) -> None:
        """Lets held calls through: processed as usual, or refused with 503 (never accepted)."""
        self.held_accept = accept
        self.gate.set()

    def slow(self, seconds: float) -> None:
        self.faults.latency = seconds

    def down(self) -> None:
        """Stops listening: connections are refused until ``up``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.drop_connections()
            self._server = None

    def up(self) -> None:
        if self._server is None:
            self._server = _Server(("127.0.0.1", self.port), _Handler)
            self._server.emulator = self
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._thread.start()

    # --- What it got ------------------------------------------------------------------------

    def received(self) -> Counter[str]:
        """Accepted messages per recipient address."""
        with self.lock:
            return Counter(message.to for message in self.accepted)

    def idle_for(self, seconds: float) -> bool:
        """No call in flight and none answered for ``seconds``."""
        with self.lock:
            return self.in_flight == 0 and time.monotonic() - self.last_answer_at >= seconds

    def __enter__(self) -> EspEmulator:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # --- Answers (called by the handler) ----------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if not self.gate.is_set():
            with self.lock:
                self.held += 1
                self.held_messages += _message_count(path, body)
            self.gate.wait()
            if not self.held_accept:
                return Reply(503, {"message": "emulated outage"})
        with self.lock:
            self.in_flight += 1
        try:
            if self.faults.latency:
                time.sleep(self.faults.latency)
            reply = self._answer(method, path, headers, body)
            with self.lock:
                self.calls += 1
                calls = self.calls
                if self.record_requests:
                    self.requests.append(ApiRequest(method, path, headers, body, reply.status))
            if self.after_call is not None:
                self.after_call(calls)
            return reply
        finally:
            with self.lock:
                self.in_flight -= 1
                self.last_answer_at = time.monotonic()

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self.lock:
            if self.faults.fail_left > 0:
                self.faults.fail_left -= 1
                return Reply(self.faults.fail_status, {"message": "emulated failure"})
        if method != "POST":
            return Reply(405, {"message": "method not allowed"})
        if path in ("/email", "/email/batch"):
            return self._postmark(path, headers, body)
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "v3" and parts[2] == "messages":
            return self._mailgun(parts[1], headers, body)
        return Reply(404, {"message": "not found"})

    def _postmark(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if headers.get("x-postmark-server-token") != POSTMARK_TOKEN:
            return Reply(401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."})
        try:
            data = json.loads(body)
        except ValueError:
            return Reply(422, {"ErrorCode": 402, "Message": "Invalid JSON"})
        if path == "/email":
            one = self._postmark_one(data)
            return Reply(200 if one["ErrorCode"] == 0 else 422, one)
        if not isinstance(data, list) or len(data) > 500:
            return Reply(422, {"ErrorCode": 410, "Message": "Too many batch messages."})
        return Reply(200, [self._postmark_one(message) for message in data])

    def _postmark_one(self, message: dict[str, Any]) -> dict[str, Any]:
        to = [addr.lower() for _, addr in getaddresses([str(message.get("To", ""))]) if addr]
        if not to or not message.get("From"):
            return {"ErrorCode": 300, "Message": "Invalid 'To' address: ''."}
        inactive = [addr for addr in to if addr in self.faults.inactive]
        if inactive:
            return {
                "ErrorCode": 406,
                "Message": "You tried to send to recipient(s) that have been marked as "
                f"inactive.\nFound inactive addresses: {', '.join(inactive)}.\n"
                "Inactive recipients are ones that have generated a hard bounce or a spam "
                "complaint.",
            }
        message_id = str(uuid.uuid4())
        with self.lock:
            self.accepted += [Accepted("postmark", addr, message_id, message) for addr in to]
        return {
            "To": message["To"],
            "SubmittedAt": datetime.now(UTC).isoformat(),
            "MessageID": message_id,
            "ErrorCode": 0,
            "Message": "OK",
        }

    def _mailgun(self, domain: str, headers: dict[str, str], body: bytes) -> Reply:
        expected = "Basic " + base64.b64encode(f"api:{MAILGUN_KEY}".encode()).decode()
        if headers.get("authorization") != expected:
            return Reply(401, {"message": "Invalid private key"})
        fields = _form(headers.get("content-type", ""), body)
        to = [addr.lower() for _, addr in getaddresses(fields.get("to", [])) if addr]
        if not to or not fields.get("from"):
            return Reply(400, {"message": "'to' parameter is missing"})
        refused = [addr for addr in to if addr in self.faults.inactive]
        if refused:
            return Reply(400, {"message": f"'to' parameter is not a valid address: {refused[0]}"})
        message_id = f"<{uuid.uuid4().hex}@{domain}>"
        with self.lock:
            self.accepted += [Accepted("mailgun", addr, message_id, fields) for addr in to]
        return Reply(200, {"id": message_id, "message": "Queued. Thank you."})


def _message_count(path: str, body: bytes) -> int:
    if path == "/email/batch":
        try:
            return len(json.loads(body))
        except ValueError:
            return 0
    return 1


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


def _form(content_type: str, body: bytes) -> dict[str, list[str]]:
    """Mailgun's fields, form-encoded or multipart (anymail sends multipart with files)."""
    if content_type.startswith("multipart/"):
        parsed = message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        fields: dict[str, list[str]] = {}
        for part in parsed.walk():
            name = part.get_param("name", header="content-disposition")
            if part.is_multipart() or not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True)
            value = payload.decode() if isinstance(payload, bytes) else ""
            fields.setdefault(name, []).append(value)
        return fields
    return parse_qs(body.decode(), keep_blank_values=True)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: EspEmulator

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Cuts every kept-alive connection, as a server going down does."""
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's session reuses its connection
    server: _Server

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.emulator.answer(self.command, self.path, headers, body)
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read ``requests`` instead."""


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")
