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


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_both_dialogs_deliver_refuse_and_keep_the_session(
    smtp_sink: SmtpSink, pipelining: bool
) -> None:
    """Relays that offer PIPELINING get MAIL, RCPT and DATA in one write; others one by one."""
    smtp_sink.handler.pipelining = pipelining
    smtp_sink.rule = lambda address: "550 5.1.1 No such user" if address == "gone@x.org" else None
    with SmtpSession() as smtp:
        first = smtp.send(from_addr="a@x.org", to_addr="one@x.org", data=MESSAGE)
        refused = smtp.send(from_addr="a@x.org", to_addr="gone@x.org", data=MESSAGE)
        after = smtp.send(from_addr="a@x.org", to_addr="two@x.org", data=MESSAGE)

    assert (first.outcome, refused.outcome, after.outcome) == (
        Outcome.SENT,
        Outcome.NO_MAILBOX,
        Outcome.SENT,
    )
    assert refused.code == 550 and "No such user" in refused.text
    assert len(smtp_sink.messages) == 2
    assert smtp_sink.handler.sessions == 1


def test_a_pipelined_message_keeps_its_leading_dots(smtp_sink: SmtpSink) -> None:
    body = b"Subject: dots\r\nMessage-ID: <d@x>\r\n\r\n.starts with a dot\r\n..two\r\nend"
    with SmtpSession() as smtp:
        result = smtp.send(from_addr="a@x.org", to_addr="b@x.org", data=body)

    assert result.outcome is Outcome.SENT
    (message,) = smtp_sink.messages
    assert message.get_content().splitlines() == [".starts with a dot", "..two", "end"]


def test_a_421_at_rcpt_is_a_throttle_and_the_next_message_opens_a_new_session(
    smtp_sink: SmtpSink,
) -> None:
    slow_down = "421 4.7.0 Too many messages, slow down"
    smtp_sink.rule = lambda address: slow_down if address == "busy@x.org" else None
    with SmtpSession() as smtp:
        deferred = smtp.send(from_addr="a@x.org", to_addr="busy@x.org", data=MESSAGE)
        after = smtp.send(from_addr="a@x.org", to_addr="ok@x.org", data=MESSAGE)

    assert deferred.code == 421 and deferred.throttled and deferred.attempted
    # A server closes the session after a 421: the next message does not reuse it.
    assert after.outcome is Outcome.SENT and smtp_sink.handler.sessions == 2
