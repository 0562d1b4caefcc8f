"""The demo runs the bounce receiver, with a bounce domain so VERP addresses show."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from campaigns.management.commands.demo import DEMO_BOUNCE_DOMAIN, _port_or_free, demo_env


def test_the_demo_gives_a_bounce_domain_unless_one_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPSDASH_BOUNCE_DOMAIN", raising=False)
    env = demo_env(port=1, smtp_port=2, maildir=tmp_path, bounce_port=18320)
    assert env["OPSDASH_BOUNCE_DOMAIN"] == DEMO_BOUNCE_DOMAIN
    assert (env["OPSDASH_BOUNCE_HOST"], env["OPSDASH_BOUNCE_PORT"]) == ("127.0.0.1", "18320")
    monkeypatch.setenv("OPSDASH_BOUNCE_DOMAIN", "bounces.acme.test")
    assert demo_env(port=1, smtp_port=2, maildir=tmp_path)["OPSDASH_BOUNCE_DOMAIN"] == (
        "bounces.acme.test"
    )


def test_a_busy_bounce_port_is_swapped_for_a_free_one() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 18321))
        busy.listen()
        assert _port_or_free(18321) != 18321
    assert _port_or_free(18321) == 18321
