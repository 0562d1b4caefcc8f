"""``manage.py bounces``: the bounce receiver the MTA hands bounce mail to (SMTP or LMTP).

It accepts mail only for OPSDASH_BOUNCE_DOMAIN (the VERP addresses the SMTP channel sends
from) and answers 250 only once the message is stored, 451 when storing failed, so the MTA
keeps the bounce and tries again rather than losing it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from collections.abc import Sequence
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from campaigns.services.bounces import bounce_message_receive

log = logging.getLogger("opsdash.bounces")

# Bounces quote the original message; a provider may quote it whole, attachments and all.
MESSAGE_SIZE_LIMIT = 25 * 1024 * 1024


class BounceHandler:
    """aiosmtpd hooks: take recipients at our domain only, store each message in a thread."""

    def __init__(self, *, domain: str, lmtp: bool) -> None:
        self.domain = domain.lower()
        self.lmtp = lmtp

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.rpartition("@")[2].lower() != self.domain:
            return f"550 5.1.1 <{address}>: not a bounce address of this server"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw: bytes = envelope.original_content or envelope.content
        try:
            # The ORM is synchronous: the message is stored on a worker thread, off the loop.
            await asyncio.to_thread(_store, raw, envelope.mail_from or "", envelope.rcpt_tos)
        except Exception:
            log.exception("could not store a bounce message from %s", envelope.mail_from)
            reply = "451 4.3.0 Could not store the message, try again later"
        else:
            reply = "250 2.0.0 Stored"
        # LMTP answers DATA once per recipient (RFC 2033); the message is stored once for all.
        return "\r\n".join([reply] * len(envelope.rcpt_tos)) if self.lmtp else reply


def _store(raw: bytes, mail_from: str, rcpt_tos: Sequence[str]) -> None:
    close_old_connections()
    try:
        bounce = bounce_message_receive(raw=raw, mail_from=mail_from, rcpt_tos=list(rcpt_tos))
        log.info("bounce message %s: %s, %s events", bounce.pk, bounce.status, bounce.events_found)
    finally:
        close_old_connections()


class BounceController(Controller):
    def __init__(self, handler: BounceHandler, *, host: str, port: int) -> None:
        super().__init__(
            handler,
            hostname=host,
            port=port,
            data_size_limit=MESSAGE_SIZE_LIMIT,
            # Named once here: left unset, aiosmtpd looks the name up in DNS per connection.
            server_hostname=socket.gethostname(),
        )
        self.lmtp = handler.lmtp

    def factory(self) -> SMTP:
        server_class = LMTP if self.lmtp else SMTP
        return server_class(self.handler, **self.SMTP_kwargs)


class Command(BaseCommand):
    help = "Receives bounce mail for OPSDASH_BOUNCE_DOMAIN over SMTP or LMTP and stores it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.OPSDASH_BOUNCE_HOST)
        parser.add_argument("--port", type=int, default=settings.OPSDASH_BOUNCE_PORT)
        parser.add_argument(
            "--protocol", choices=("smtp", "lmtp"), default=settings.OPSDASH_BOUNCE_PROTOCOL
        )

    def handle(self, *args: Any, host: str, port: int, protocol: str, **options: Any) -> None:
        domain = settings.OPSDASH_BOUNCE_DOMAIN
        if not domain:
            raise CommandError("Set OPSDASH_BOUNCE_DOMAIN: the domain whose mail is bounces.")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        handler = BounceHandler(domain=domain, lmtp=protocol == "lmtp")
        controller = BounceController(handler, host=host, port=port)
        controller.start()
        try:
            self.stdout.write(
                f"Bounce receiver ({protocol.upper()}) on {host}:{port} for @{domain}", ending="\n"
            )
            self.stdout.flush()
            stop.wait()
        finally:
            controller.stop()
