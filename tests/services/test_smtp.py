"""The SMTP session against a real local server: reuse, classification, reconnection."""

from __future__ import annotations

import pytest
from pytest_django import Settings

from campaigns.services.smtp import Outcome, SmtpSession, classify
from opsdash.smtp_sink import DROP, SmtpSink

MESSAGE = b"Subject: hi\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    ("code", "text", "outcome"),
    [
        (250, "OK", Outcome.SENT),
        (451, "4.3.0 Try again later", Outcome.TRANSIENT),
        (421, "4.7.0 Slow down", Outcome.TRANSIENT),
        (0, "timed out", Outcome.TRANSIENT),
        (550, "5.1.1 No such user", Outcome.NO_MAILBOX),
        (550, "mailbox does not exist", Outcome.NO_MAILBOX),
        (550, "5.7.1 Rejected by policy", Outcome.PERMANENT),
        (554, "5.1.1 No such user", Outcome.PERMANENT),
    ],
)
def test_replies_are_classified(code: int, text: str, outcome: Outcome) -> None:
    assert classify(code, text) is outcome


def test_one_session_carries_many_messages(smtp_sink: SmtpSink) -> None:
    with SmtpSession() as smtp:
        results = [
            smtp.send(from_addr="a@x.org", to_addr=f"r{i}@x.org", data=MESSAGE) for i in range(5)
        ]

    assert {r.outcome for r in results} == {Outcome.SENT}
    assert len(smtp_sink.messages) == 5 and smtp_sink.handler.sessions == 1


def test_a_refusal_leaves_the_session_usable(smtp_sink: SmtpSink) -> None:
    smtp_sink.rule = lambda address: "550 5.1.1 No such user" if address == "gone@x.org" else None
    with SmtpSession() as smtp:
        refused = smtp.send(from_addr="a@x.org", to_addr="gone@x.org", data=MESSAGE)
        accepted = smtp.send(from_addr="a@x.org", to_addr="here@x.org", data=MESSAGE)

    assert refused.outcome is Outcome.NO_MAILBOX and refused.code == 550
    assert accepted.outcome is Outcome.SENT and smtp_sink.handler.sessions == 1


def test_a_dropped_connection_is_transient_and_the_next_message_reconnects(
    smtp_sink: SmtpSink,
) -> None:
    smtp_sink.rule = lambda address: DROP if address == "drop@x.org" else None
    with SmtpSession() as smtp:
        dropped = smtp.send(from_addr="a@x.org", to_addr="drop@x.org", data=MESSAGE)
        after = smtp.send(from_addr="a@x.org", to_addr="ok@x.org", data=MESSAGE)

    assert dropped.outcome is Outcome.TRANSIENT and dropped.attempted
    assert after.outcome is Outcome.SENT and smtp_sink.handler.sessions == 2


def test_an_unreachable_server_is_reported_as_not_attempted(settings: Settings) -> None:
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", SmtpSink().port

    with SmtpSession() as smtp:
        result = smtp.send(from_addr="a@x.org", to_addr="b@x.org", data=MESSAGE)

    assert result.outcome is Outcome.TRANSIENT and not result.attempted
    assert "cannot connect" in result.text


def test_a_server_that_comes_back_is_used_again(smtp_sink: SmtpSink) -> None:
    with SmtpSession() as smtp:
        smtp_sink.stop()
        down = smtp.send(from_addr="a@x.org", to_addr="b@x.org", data=MESSAGE)
        smtp_sink.start()
        up = smtp.send(from_addr="a@x.org", to_addr="b@x.org", data=MESSAGE)

    assert down.outcome is Outcome.TRANSIENT
    assert up.outcome is Outcome.SENT and len(smtp_sink.messages) == 1
