"""The demo names its sender, so its unsubscribe page is not headed "opsdash"."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaigns.management.commands.demo import DEMO_SENDER_NAME, demo_env


def test_the_demo_gives_its_processes_a_sender_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPSDASH_SENDER_NAME", raising=False)
    env = demo_env(port=1, smtp_port=2, maildir=tmp_path)
    assert env["OPSDASH_SENDER_NAME"] == DEMO_SENDER_NAME == "Opsdash Demo"


def test_a_sender_name_already_set_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSDASH_SENDER_NAME", "Acme Mail")
    assert demo_env(port=1, smtp_port=2, maildir=tmp_path)["OPSDASH_SENDER_NAME"] == "Acme Mail"
