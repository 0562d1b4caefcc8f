"""Helpers every browser test shares: waiting, logging in, the admin's tabs and toolbar links."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "correct-horse-battery-staple"  # the factories' password for every user
TIMEOUT_MS = 30_000  # generous: CI runs these on two shared cores


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Polls ``predicate`` until it returns something true, and returns that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


def login(page: Any, base: str, username: str, password: str = PASSWORD) -> None:
    """Signs in through the admin's own login form and waits for the dashboard."""
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.locator("form button[type=submit], form input[type=submit]").first.click()
    page.wait_for_selector("#dashboard-kpis")


def tab(page: Any, name: str) -> None:
    """Opens one of a change form's fieldset tabs by its title."""
    page.locator(r"a[x-on\:click^='activeFieldsetTab']", has_text=name).first.click()


def action(page: Any, name: str) -> None:
    """Clicks a toolbar link by its label (the label may follow an icon)."""
    page.locator("a", has_text=re.compile(rf"^\s*\S*\s*{re.escape(name)}\s*$")).first.click()
