"""``make demo``: migrate, load the demo data, then run web, worker, beat, a mail catcher and
the bounce receiver.

Ctrl-C stops every process. The staff password is printed (demo data only, reset each start).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from campaigns.models import Campaign
from opsdash.workers import celery_beat_argv, celery_worker_argv

FIXTURES = sorted((Path(settings.BASE_DIR) / "fixtures").glob("0*.json"))


class Command(BaseCommand):
    help = (
        "Runs the whole product locally: web, Celery worker, beat, an SMTP catcher and the "
        "bounce receiver."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("OPSDASH_PORT", 8000)))
        parser.add_argument("--smtp-port", type=int, default=settings.EMAIL_PORT)
        parser.add_argument(
            "--bounce-port",
            type=int,
            default=settings.OPSDASH_BOUNCE_PORT,
            help="The bounce receiver's port; a free one is taken when this one is busy.",
        )
        parser.add_argument("--no-run", action="store_true", help="Prepare the data, then stop.")

    def handle(
        self,
        *args: Any,
        port: int,
        smtp_port: int,
        bounce_port: int,
        no_run: bool,
        **options: Any,
    ) -> None:
        _ensure_database()
        call_command("migrate", interactive=False, verbosity=0)
        if not Campaign.objects.exists():
            call_command("loaddata", *[str(path) for path in FIXTURES], verbosity=0)
            self.stdout.write(f"Loaded demo data from {len(FIXTURES)} fixtures.")
        password = _reset_demo_user()
        if no_run:
            return
        maildir = Path(settings.VAR_DIR) / "mailbox"
        bounce_port = _port_or_free(bounce_port)
        env = demo_env(port=port, smtp_port=smtp_port, maildir=maildir, bounce_port=bounce_port)
        processes = _start_all(port=port, smtp_port=smtp_port, maildir=maildir, env=env)
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  opsdash is running ({settings.PROFILE} profile)\n"
                f"  Admin:    http://127.0.0.1:{port}/admin/\n"
                f"  Login:    demo / {password}   (demo account, password reset at each start)\n"
                "            demo-editor, demo-approver, demo-auditor: one role each, same "
                "password\n"
                f"  Mailbox:  http://127.0.0.1:{port}/admin/mailbox/  (what the SMTP catcher got)\n"
                f"  Archive:  http://127.0.0.1:{port}/archive/  (published campaigns, once sent)\n"
                f"  Bounces:  receiver on 127.0.0.1:{bounce_port} for "
                f"@{env['OPSDASH_BOUNCE_DOMAIN']}; open a campaign's message in the\n"
                "            Mailbox and press “Play a bounce” (or: manage.py play_bounce <id>)\n"
                "  Open “November newsletter” under Campaigns and press “Send now”.\n"
                "  Ctrl-C stops everything.\n"
            )
        )
        _supervise(processes)


DEMO_SENDER_NAME = "Opsdash Demo"
DEMO_BOUNCE_DOMAIN = "bounces.opsdash.localhost"


def demo_env(
    *, port: int, smtp_port: int, maildir: Path, bounce_port: int | None = None
) -> dict[str, str]:
    """The environment of the demo's processes.

    DEBUG is off by default everywhere; the demo asks for it (runserver then serves the static
    files and shows error pages) unless DJANGO_DEBUG is already set. The secret key needs
    nothing here: every process reads the same generated one from the shared var/ folder.
    The unsubscribe page is headed with the sender's name, which the demo gives unless one is
    set, so it does not read "opsdash" to a person who came from a message.
    A bounce domain is given unless one is set, so messages leave from VERP addresses the
    demo's own bounce receiver takes back ("Play a bounce" in the mailbox).
    """
    return {
        **os.environ,
        "DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "true"),
        "OPSDASH_SENDER_NAME": os.environ.get("OPSDASH_SENDER_NAME") or DEMO_SENDER_NAME,
        "OPSDASH_MAILBOX_DIR": str(maildir),
        "EMAIL_PORT": str(smtp_port),
        "OPSDASH_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "OPSDASH_BOUNCE_DOMAIN": os.environ.get("OPSDASH_BOUNCE_DOMAIN") or DEMO_BOUNCE_DOMAIN,
        "OPSDASH_BOUNCE_HOST": "127.0.0.1",
        "OPSDASH_BOUNCE_PORT": str(bounce_port or settings.OPSDASH_BOUNCE_PORT),
    }


def _port_or_free(port: int) -> int:
    """``port`` when nothing listens there yet, else a free one: a busy default port (another
    demo, a test) would otherwise stop the whole demo when the receiver cannot bind it."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_database() -> None:
    """Creates the PostgreSQL database of the services profile when it does not exist yet."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        return
    import psycopg

    with psycopg.connect(
        host=str(db["HOST"]),
        port=int(db["PORT"] or 5432),
        user=str(db["USER"]),
        password=str(db["PASSWORD"]),
        dbname="postgres",
        autocommit=True,
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def _reset_demo_user() -> str:
    password = secrets.token_urlsafe(9)
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(
        username="demo", defaults={"email": "demo@example.com"}
    )
    user.is_staff = True
    user.is_superuser = True
    user.set_password(password)
    user.save()
    _reset_role_users(password)
    return password


DEMO_ROLES = ("editor", "approver", "auditor")


def _reset_role_users(password: str) -> None:
    """One account per role (demo-editor, demo-approver, demo-auditor), same password as demo."""
    user_model = get_user_model()
    for role in DEMO_ROLES:
        user, _ = user_model.objects.get_or_create(
            username=f"demo-{role}", defaults={"email": f"demo-{role}@example.com"}
        )
        user.is_staff = True
        user.is_superuser = False
        user.set_password(password)
        user.save()
        user.groups.set(Group.objects.filter(name=role))


def _start_all(
    *, port: int, smtp_port: int, maildir: Path, env: dict[str, str]
) -> list[subprocess.Popen[bytes]]:
    python = sys.executable
    commands = [
        [python, "manage.py", "smtpsink", "--port", str(smtp_port), "--maildir", str(maildir)],
        celery_worker_argv(
            name="demo@%h",
            queues=settings.QUEUES,
            concurrency=4,
            pool="threads",
            loglevel="warning",
            standalone=False,
        ),
        celery_beat_argv(
            schedule=str(Path(settings.VAR_DIR) / "celerybeat-schedule"), loglevel="warning"
        ),
        [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        [
            python,
            "manage.py",
            "bounces",
            "--host",
            "127.0.0.1",
            "--port",
            env["OPSDASH_BOUNCE_PORT"],
        ],
    ]
    # Each child gets its own process group so Ctrl-C reaches them only through us, in order.
    return [
        subprocess.Popen(cmd, cwd=settings.BASE_DIR, env=env, start_new_session=True)  # noqa: S603
        for cmd in commands
    ]


def _supervise(processes: list[subprocess.Popen[bytes]]) -> None:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(proc.poll() is None for proc in processes):
        time.sleep(0.5)
    for proc in processes:
        if proc.poll() is not None and not stopping:
            sys.stderr.write(f"{proc.args!s} exited ({proc.returncode}).\n")
    for proc in reversed(processes):
        if proc.poll() is None:
            proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    sys.stdout.write("opsdash stopped.\n")
