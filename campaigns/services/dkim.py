"""DKIM signing of the SMTP channel's messages (RFC 6376), with the key from the environment."""

from __future__ import annotations

from functools import cache

import dkim
from django.conf import settings

# The headers a receiver must be able to trust: who it is from and to, what it is, when, and
# the unsubscribe headers Gmail and Yahoo read for one-click unsubscribe.
SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
    b"Reply-To",
)


@cache
def dkim_enabled() -> bool:
    return bool(
        settings.OPSDASH_DKIM_DOMAIN
        and settings.OPSDASH_DKIM_SELECTOR
        and settings.OPSDASH_DKIM_PRIVATE_KEY
    )


def dkim_sign(message: bytes) -> bytes:
    """``message`` with a DKIM-Signature header in front; unchanged when DKIM is off."""
    if not dkim_enabled():
        return message
    signature: bytes = dkim.sign(
        message,
        settings.OPSDASH_DKIM_SELECTOR.encode(),
        settings.OPSDASH_DKIM_DOMAIN.encode(),
        settings.OPSDASH_DKIM_PRIVATE_KEY.encode(),
        include_headers=list(SIGNED_HEADERS),
    )
    return signature + message
