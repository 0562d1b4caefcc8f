"""Runs the local SMTP catcher: ``manage.py smtpsink --port 1025 --maildir var/mailbox``."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from opsdash.smtp_sink import SmtpSink


class Command(BaseCommand):
    help = "Runs a local SMTP server that keeps every message it receives in a Maildir."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=1025)
        parser.add_argument("--maildir", type=Path, required=True)

    def handle(self, *args: Any, host: str, port: int, maildir: Path, **options: Any) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        with SmtpSink(host=host, port=port, maildir=maildir):
            self.stdout.write(f"SMTP catcher on {host}:{port}, keeping mail in {maildir}")
            stop.wait()
