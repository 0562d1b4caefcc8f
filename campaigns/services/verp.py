"""VERP: an envelope sender per message, so a bounce names the delivery it is about.

A bounce goes to the message's envelope sender (its Return-Path). Each message of the SMTP
channel is sent from ``bounces+<token>@<OPSDASH_BOUNCE_DOMAIN>``, where the token is the
delivery id signed with the secret key: the bounce receiver reads the delivery back from the
address it was sent to, and a forged or mangled address is recognised as not ours.
"""

from __future__ import annotations

import base64

from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

_LOCAL = "bounces"
_SALT = "opsdash.verp"


def _signature(value: str) -> str:
    # Lower-case base32: MTAs may change the case of a local part, and base32 survives that.
    digest = salted_hmac(_SALT, value, algorithm="sha256").digest()
    return base64.b32encode(digest[:10]).decode().lower()


def verp_envelope_from(*, delivery_id: int) -> str | None:
    """The envelope sender for one delivery, or None when no bounce domain is configured."""
    domain = settings.OPSDASH_BOUNCE_DOMAIN
    if not domain:
        return None
    return f"{_LOCAL}+{delivery_id}-{_signature(str(delivery_id))}@{domain}"


def verp_delivery_id(address: str) -> int | None:
    """The delivery a bounce address names, or None when it is not a valid address of ours."""
    local = address.strip().strip("<>").rpartition("@")[0]
    tag, plus, token = local.partition("+")
    if not plus or tag.lower() != _LOCAL or not token:
        return None
    value, sep, signature = token.lower().rpartition("-")
    if not sep or not value.isdigit():
        return None
    if not constant_time_compare(signature, _signature(value)):
        return None
    return int(value)
