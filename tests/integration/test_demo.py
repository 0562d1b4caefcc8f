"""`make demo` end to end on the embedded profile: separate web, worker, beat and SMTP catcher
processes sharing SQLite and the filesystem broker, exactly as a newcomer runs them."""

from __future__ import annotations

import http.cookiejar
import mailbox
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import processes

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def embedded_env(var_dir: Path) -> dict[str, str]:
    drop = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "OPSDASH_", "EMAIL_", "DJANGO_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(OPSDASH_PROFILE="embedded", OPSDASH_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1")
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


SEND_NOW = """
from campaigns import publishers
from campaigns.models import Campaign
from campaigns.services.campaigns import campaign_send_now
campaign_send_now(campaign=Campaign.objects.get(pk=1), by=None, launch=publishers.publish_launch)
"""

REPORT = """
from campaigns.models import Send
from django_celery_results.models import TaskResult
send = Send.objects.get()
print("send", send.status, send.sent_count, send.total)
print("results", TaskResult.objects.filter(status="SUCCESS").count())
"""


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Polls every half second (some predicates start a process); fails with the demo's logs."""
    processes.wait_for(predicate, timeout=timeout, what=what, interval=0.5, logs=_logs)


@pytest.mark.timeout(240)
def test_the_demo_sends_the_newsletter_and_stops_cleanly(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    port, smtp_port = free_port(), free_port()
    log = (tmp_path / "demo.log").open("w+")
    _LOGS[:] = [tmp_path / "demo.log"]
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port), "--smtp-port", str(smtp_port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: "Ctrl-C stops everything" in (tmp_path / "demo.log").read_text(),
            90,
            "the demo banner",
        )
        banner = (tmp_path / "demo.log").read_text()
        assert re.search(r"Login:\s+demo / \S{8,}", banner)
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{port}/admin/login/"), 120, "the web server")

        manage(env, "shell", "-c", SEND_NOW)
        box = mailbox.Maildir(tmp_path / "mailbox", create=True)
        wait_for(lambda: len(box) >= 294, 120, "294 messages in the demo mailbox")
        wait_for(
            lambda: "send completed 294 294" in manage(env, "shell", "-c", REPORT),
            60,
            "the send to complete",
        )
        assert "results 0" not in manage(env, "shell", "-c", REPORT)
        subjects = {message["Subject"] for message in box}
        assert all(subject.endswith(", what's new this month") for subject in subjects)
        login = re.search(r"Login:\s+demo / (\S+)", banner)
        assert login is not None
        _the_admin_pages_open(f"http://127.0.0.1:{port}", login.group(1))
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
    assert "opsdash stopped." in (tmp_path / "demo.log").read_text()
    time.sleep(1)
    survivors = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert not survivors, f"processes left behind: {survivors}"


ADMIN_PAGES = [
    "/admin/",
    "/admin/campaigns/campaign/",
    "/admin/campaigns/campaign/1/change/",
    "/admin/campaigns/send/",
    "/admin/campaigns/send/1/change/",
    "/admin/campaigns/delivery/",
    "/admin/campaigns/recipient/",
    "/admin/campaigns/importjob/",
    "/admin/campaigns/auditentry/",
    "/admin/django_celery_results/taskresult/",
    "/admin/django_celery_beat/periodictask/",
    "/admin/mailbox/",
]


def _the_admin_pages_open(base: str, password: str) -> None:
    """Logs in as the demo user and opens the main pages on the demo's own database (SQLite)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login_page = opener.open(f"{base}/admin/login/", timeout=30).read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page)
    assert csrf is not None
    token = csrf.group(1)
    form = urllib.parse.urlencode(
        {"username": "demo", "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"}
    ).encode()
    request = urllib.request.Request(f"{base}/admin/login/", data=form, headers={"Referer": base})
    assert "/admin/login/" not in opener.open(request, timeout=30).geturl()
    for path in ADMIN_PAGES:
        with opener.open(f"{base}{path}", timeout=60) as response:
            assert response.status == 200, path
            assert "/admin/login/" not in response.geturl(), path
    mailbox_page = opener.open(f"{base}/admin/mailbox/", timeout=30).read().decode()
    assert "what&#x27;s new this month" in mailbox_page or "what's new this month" in mailbox_page


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


_LOGS: list[Path] = []


def _logs() -> str:
    return "\n".join(path.read_text()[-3000:] for path in _LOGS if path.exists())
