"""One reusable SMTP session, and the classification of what the server answered."""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from django.conf import settings

# Replies that mean the mailbox does not exist: the address is suppressed, not just failed.
_NO_SUCH_MAILBOX = {550, 551, 553}
_NO_SUCH_MAILBOX_HINTS = (
    "5.1.1",
    "5.1.0",
    "5.1.10",
    "no such user",
    "does not exist",
    "unknown user",
)


# Deferrals that say "slow down" rather than "not this message": the mailbox provider (or the
# relay in front of it) limits the rate. They shrink the provider's sending rate, and the row
# goes back to the queue without counting an attempt: a throttled row is never failed for it.
_THROTTLE_CODES = {421, 450, 451}
# "Try again later" alone is not one: servers say it for any temporary trouble (451 4.3.0).
_THROTTLE_HINTS = ("4.7.", "rate", "throttl", "too many", "slow down")


def is_throttle(code: int, text: str) -> bool:
    """Whether a reply asks the sender to slow down (421, or 450/451 or a 4.7.x about rates)."""
    if code == 421:
        return True
    lowered = text.lower()
    return 400 <= code < 500 and (
        (code in _THROTTLE_CODES and any(hint in lowered for hint in _THROTTLE_HINTS))
        or lowered.startswith("4.7.")
    )


class Outcome(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"  # 4xx, timeout, dropped connection: try again later
    PERMANENT = "permanent"  # 5xx: this message will never be accepted
    NO_MAILBOX = "no_mailbox"  # 5xx saying the mailbox does not exist: suppress the address


@dataclass(frozen=True)
class SmtpResult:
    outcome: Outcome
    code: int
    text: str
    # False when no session could be opened: the server never saw this message, so the attempt
    # does not count against the row, and the rest of the batch waits for the server to return.
    attempted: bool = True

    @property
    def summary(self) -> str:
        return f"{self.code} {self.text}".strip()[:500]

    @property
    def throttled(self) -> bool:
        return self.attempted and is_throttle(self.code, self.text)


def classify(code: int, text: str) -> Outcome:
    if 200 <= code < 300:
        return Outcome.SENT
    if 400 <= code < 500 or code <= 0:
        return Outcome.TRANSIENT
    lowered = text.lower()
    if code in _NO_SUCH_MAILBOX and any(hint in lowered for hint in _NO_SUCH_MAILBOX_HINTS):
        return Outcome.NO_MAILBOX
    return Outcome.PERMANENT


_CONNECTION_ERRORS = (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError, EOFError)


class _Stale(Exception):
    """A kept connection the server had closed: nothing of the message reached it."""


class SmtpSession:
    """Opens lazily, reuses one connection, and reopens after the server dropped it.

    A session may be kept open between batches (the worker's pool of sessions), so a relay's
    idle timeout can close it while it waits: a message whose first command finds the
    connection gone goes again, once, on a fresh connection instead of counting an attempt.
    """

    def __init__(self) -> None:
        self._conn: smtplib.SMTP | None = None
        self.opened = 0  # connections opened so far (a pool reports how often it reconnects)

    def __enter__(self) -> SmtpSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def _open(self) -> smtplib.SMTP:
        host, port, timeout = settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT
        conn: smtplib.SMTP
        if settings.EMAIL_USE_SSL:
            conn = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            conn = smtplib.SMTP(host, port, timeout=timeout)
            if settings.EMAIL_USE_TLS:
                conn.starttls(context=ssl.create_default_context())
        if settings.EMAIL_HOST_USER:
            conn.login(settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD)
        self.opened += 1
        return conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (*_CONNECTION_ERRORS, smtplib.SMTPException):
                self._conn.close()
            self._conn = None

    def send(self, *, from_addr: str, to_addr: str, data: bytes) -> SmtpResult:
        """Sends one message; never raises for what the server or the network did."""
        if self._conn is not None:
            try:
                return self._attempt(self._conn, from_addr, to_addr, data, kept=True)
            except _Stale:
                self.drop()
        try:
            self._conn = self._open()
        except (TimeoutError, *_CONNECTION_ERRORS, smtplib.SMTPException) as exc:
            text = f"cannot connect: {type(exc).__name__}: {exc}"
            return SmtpResult(Outcome.TRANSIENT, 0, text, attempted=False)
        return self._attempt(self._conn, from_addr, to_addr, data, kept=False)

    def _attempt(
        self, conn: smtplib.SMTP, from_addr: str, to_addr: str, data: bytes, *, kept: bool
    ) -> SmtpResult:
        try:
            result = self._transaction(conn, from_addr, to_addr, data, kept=kept)
            if result.code == 421:
                self.drop()  # the server closes the session after a 421
            return result
        except _Stale:
            raise
        except smtplib.SMTPResponseException as exc:
            self._reset_after_error()
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            return SmtpResult(classify(exc.smtp_code, text), exc.smtp_code, text)
        except (TimeoutError, *_CONNECTION_ERRORS, smtplib.SMTPException) as exc:
            # The session may be poisoned: drop it so the next message opens a fresh one.
            self.drop()
            return SmtpResult(Outcome.TRANSIENT, 0, f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _transaction(
        conn: smtplib.SMTP, from_addr: str, to_addr: str, data: bytes, *, kept: bool
    ) -> SmtpResult:
        try:
            conn.ehlo_or_helo_if_needed()
        except (*_CONNECTION_ERRORS, smtplib.SMTPException) as exc:
            if kept:
                raise _Stale from exc
            raise
        if conn.has_extn("pipelining"):
            return _pipelined(conn, from_addr, to_addr, data, kept=kept)
        try:
            code, text = conn.mail(from_addr)
        except (*_CONNECTION_ERRORS, smtplib.SMTPException) as exc:
            if kept:
                raise _Stale from exc
            raise
        if kept and code == 421:  # the server's goodbye to an idle session, read only now
            raise _Stale
        steps: tuple[Callable[[], tuple[int, bytes]], ...] = (
            lambda: (code, text),
            lambda: conn.rcpt(to_addr),
        )
        for step in steps:
            code, text = step()
            if code >= 300:
                if code != 421:  # after a 421 the server closes the session: no reset
                    conn.rset()
                return _result(code, text)
        return _result(*conn.data(data))

    def _reset_after_error(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (*_CONNECTION_ERRORS, smtplib.SMTPException):
            self.drop()

    def drop(self) -> None:
        """Closes the connection without a goodbye (its state is unknown); the next message
        opens a new one."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _pipelined(
    conn: smtplib.SMTP, from_addr: str, to_addr: str, data: bytes, *, kept: bool
) -> SmtpResult:
    """MAIL, RCPT and DATA in one write, then their replies (RFC 2920 PIPELINING): two round
    trips a message instead of four, which a relay across the internet makes count.

    A session kept from an earlier message that answers MAIL with 421 (or not at all) was
    closed by the server while idle: ``_Stale``, and the message goes on a new session.
    """
    commands = (
        f"MAIL FROM:{smtplib.quoteaddr(from_addr)}\r\n"
        f"RCPT TO:{smtplib.quoteaddr(to_addr)}\r\nDATA\r\n"
    )
    try:
        conn.send(commands)
        mail = conn.getreply()
    except (*_CONNECTION_ERRORS, smtplib.SMTPException) as exc:
        if kept:
            raise _Stale from exc
        raise
    if kept and mail[0] == 421:
        raise _Stale
    if mail[0] == 421:  # a server that says goodbye answers nothing more
        return _result(*mail)
    rcpt = conn.getreply()
    if rcpt[0] == 421:
        return _result(*rcpt)
    refused = mail if mail[0] >= 300 else rcpt if rcpt[0] >= 300 else None
    if refused is not None:
        _pipeline_abort(conn, ready_for_data=conn.getreply()[0] == 354)
        return _result(*refused)
    code, text = conn.getreply()
    if code != 354:
        conn.rset()
        return _result(code, text)
    conn.send(_dot_stuffed(data))
    return _result(*conn.getreply())


def _pipeline_abort(conn: smtplib.SMTP, *, ready_for_data: bool) -> None:
    """After a refused MAIL or RCPT: a server that still took DATA gets an empty message
    ended at once (it has no recipient, so nothing is delivered), then the session resets."""
    if ready_for_data:
        conn.send(b".\r\n")
        conn.getreply()
    conn.rset()


def _dot_stuffed(data: bytes) -> bytes:
    """The message as DATA carries it: leading dots doubled, ended by CRLF . CRLF."""
    body = _LEADING_DOT.sub(b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def _result(code: int, text: bytes) -> SmtpResult:
    reply = text.decode(errors="replace")
    return SmtpResult(classify(code, reply), code, reply)
