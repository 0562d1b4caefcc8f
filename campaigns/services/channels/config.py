"""The configured sending channels (settings.OPSDASH_CHANNELS), parsed and checked.

Each entry is ``name=backend`` or ``name=backend:stream``; the backend is ``smtp`` (the relay
in EMAIL_*) or a django-anymail ESP (``postmark``, ``mailgun``, ``amazon_ses``, ...), the
stream a Postmark message stream. A bad value is an ImproperlyConfigured naming the entry.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SMTP = "smtp"
# Campaign.channel and Send.channel hold the name: at most 32 characters.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    backend: str  # "smtp" or an anymail ESP module name
    stream: str = ""  # the ESP's message stream (Postmark's MessageStream), if any

    @property
    def is_smtp(self) -> bool:
        return self.backend == SMTP

    @property
    def backend_path(self) -> str:
        """The Django email backend anymail provides for this ESP."""
        return f"anymail.backends.{self.backend}.EmailBackend"


def channels_parse(entries: list[str] | tuple[str, ...], default: str) -> dict[str, ChannelConfig]:
    """Name -> channel, in the configured order; the default channel is checked to be one."""
    found: dict[str, ChannelConfig] = {}
    for entry in entries:
        channel = channel_entry_parse(entry)
        if channel.name in found:
            raise ImproperlyConfigured(
                f"OPSDASH_CHANNELS names the channel {channel.name!r} twice; names are unique."
            )
        found[channel.name] = channel
    if not found:
        raise ImproperlyConfigured("OPSDASH_CHANNELS is empty: configure at least one channel.")
    if default not in found:
        raise ImproperlyConfigured(
            f"OPSDASH_DEFAULT_CHANNEL={default!r} is not one of the channels in "
            f"OPSDASH_CHANNELS ({', '.join(found)})."
        )
    return found


def channel_entry_parse(entry: str) -> ChannelConfig:
    name, equals, spec = (part.strip() for part in entry.partition("="))
    backend, _, stream = (part.strip() for part in spec.partition(":"))
    backend = backend.lower()
    if not equals or not _NAME.match(name):
        raise ImproperlyConfigured(
            f"OPSDASH_CHANNELS entry {entry!r} must be name=backend or name=backend:stream, "
            "the name lower-case letters, digits, '-' or '_' (at most 32)."
        )
    if backend != SMTP and not _is_anymail_esp(backend):
        raise ImproperlyConfigured(
            f"OPSDASH_CHANNELS entry {entry!r}: unknown backend {backend!r}; use 'smtp' or "
            "an ESP django-anymail supports (postmark, mailgun, amazon_ses, sendgrid, brevo, ...)."
        )
    if stream and backend == SMTP:
        raise ImproperlyConfigured(
            f"OPSDASH_CHANNELS entry {entry!r}: a stream is for an ESP, not the SMTP relay."
        )
    return ChannelConfig(name=name, backend=backend, stream=stream)


def _is_anymail_esp(backend: str) -> bool:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", backend) or backend.startswith("base"):
        return False
    return importlib.util.find_spec(f"anymail.backends.{backend}") is not None


@cache
def _parsed(entries: tuple[str, ...], default: str) -> dict[str, ChannelConfig]:
    return channels_parse(entries, default)


def channels_configured() -> dict[str, ChannelConfig]:
    """The channels of the current settings (parsed once per distinct value)."""
    return _parsed(tuple(settings.OPSDASH_CHANNELS), settings.OPSDASH_DEFAULT_CHANNEL)


def channel_names() -> list[str]:
    return list(channels_configured())


def channel_default() -> str:
    channels_configured()  # checks the default is one of the channels
    return str(settings.OPSDASH_DEFAULT_CHANNEL)


def channel_config(name: str) -> ChannelConfig:
    """The channel called ``name`` (empty: the default); ImproperlyConfigured if unknown."""
    channels = channels_configured()
    found = channels.get(name or channel_default())
    if found is None:
        raise ImproperlyConfigured(
            f"The sending channel {name!r} is not configured (OPSDASH_CHANNELS has "
            f"{', '.join(channels)})."
        )
    return found
