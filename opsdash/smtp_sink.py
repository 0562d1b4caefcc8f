"""A local SMTP server that keeps what it receives: the demo's mail catcher and the tests' sink.

Messages are stored in memory (for tests and benchmarks) and, when a Maildir path is given,
on disk where the admin's mailbox page reads them, headed by a Return-Path with the envelope
sender as a delivery agent writes it. ``rule`` lets a test make the server answer
4xx or 5xx for chosen recipients, the way a real server sometimes does, or drop the connection
(``DROP``). ``stop()`` and ``start()`` take the server down and bring it back on the same port,
keeping what it received.
"""

from __future__ import annotations

import mailbox
import threading
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

# Given a recipient address, a reply like "451 4.3.0 Try again later" to refuse it, DROP to
# close the connection without a reply, or None to accept it.
Rule = Callable[[str], str | None]
DROP = "DROP"


class SinkHandler:
    def __init__(
        self, maildir: Path | None = None, rule: Rule | None = None, pipelining: bool = True
    ) -> None:
        self.messages: list[EmailMessage] = []
        # Offered as relays (Postfix) offer it: commands may come several in one write.
        self.pipelining = pipelining
        self.sessions = 0  # SMTP sessions opened (EHLO/HELO seen)
        self.rule = rule
        self.lock = threading.Lock()
        self.maildir = mailbox.Maildir(maildir, create=True) if maildir else None

    async def handle_EHLO(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        if self.pipelining:  # aiosmtpd reads pipelined commands in order; it only never says so
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self.rule(address) if self.rule else None
        if refusal == DROP:
            server.transport.close()
            return "421 4.4.2 Connection dropped"
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw: bytes = envelope.original_content or envelope.content
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
            if self.maildir is not None:
                self.maildir.add(_with_return_path(raw, envelope.mail_from or ""))
        return "250 2.0.0 Message accepted"

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

    def snapshot(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)


class SmtpSink:
    """Runs the handler on a background thread: ``with SmtpSink(port=0) as sink: ...``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        maildir: Path | None = None,
        rule: Rule | None = None,
    ) -> None:
        self.handler = SinkHandler(maildir=maildir, rule=rule)
        self.host = host
        self.port = port or _free_port(host)
        self.controller: Controller | None = None

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.snapshot()

    @property
    def rule(self) -> Rule | None:
        return self.handler.rule

    @rule.setter
    def rule(self, rule: Rule | None) -> None:
        self.handler.rule = rule

    def start(self) -> SmtpSink:
        """Starts (or starts again, on the same port) with the messages kept so far."""
        self.controller = Controller(
            self.handler, hostname=self.host, port=self.port, data_size_limit=50_000_000
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _with_return_path(raw: bytes, mail_from: str) -> bytes:
    """The message as a delivery agent files it: headed by the envelope sender it came from
    (a VERP address on the SMTP channel), which the demo's "play a bounce" replies to."""
    return f"Return-Path: <{mail_from}>\r\n".encode() + raw


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
