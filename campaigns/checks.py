"""System checks for real sending: DKIM, the ESP channels and their webhooks, the bounce domain.

They run with every ``manage.py`` command that checks (``migrate`` at deployment, ``check
--deploy``), so a half-finished configuration stops the deployment with a message naming the
variable to set, instead of failing in the middle of a send or silently accepting forged events.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured

from campaigns.services.channels.config import channel_entry_parse, channels_parse
from campaigns.services.dkim import dkim_key_parse, dkim_missing

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)
RECOMMENDED_KEY_BITS = 2048


@dataclass(frozen=True)
class Esp:
    """What an ESP backend cannot send without: an ANYMAIL setting, or a package to import."""

    setting: str | None = None
    module: str | None = None
    extra: str | None = None  # the django-anymail extra that installs ``module``


# The ESPs the docs name, with what each backend reads before it can send (anymail/backends).
ESPS = {
    "postmark": Esp(setting="POSTMARK_SERVER_TOKEN"),
    "mailgun": Esp(setting="MAILGUN_API_KEY"),
    "sendgrid": Esp(setting="SENDGRID_API_KEY"),
    "brevo": Esp(setting="BREVO_API_KEY"),
    # Credentials come from boto3's own chain (AWS_* variables, an instance role, ...).
    "amazon_ses": Esp(module="boto3", extra="amazon-ses"),
}
# ESPs whose webhooks anymail verifies by the ESP's signature rather than by basic auth.
SIGNED_WEBHOOKS = frozenset({"mailgun", "mailersend", "mandrill", "postal", "unisender_go"})


def dns_name_valid(value: str, *, dotted: bool) -> bool:
    """Letters, digits and inner hyphens in labels of up to 63; ``dotted``: at least two."""
    labels = value.split(".")
    if dotted and len(labels) < 2:
        return False
    return len(value) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


@register(Tags.security)
def check_dkim(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: object
) -> list[CheckMessage]:
    """All three DKIM settings or none; a usable domain, selector and key."""
    missing = dkim_missing()
    if missing:
        return [
            Error(
                f"DKIM is partly configured: {', '.join(missing)} not set.",
                hint="Set OPSDASH_DKIM_DOMAIN, OPSDASH_DKIM_SELECTOR and OPSDASH_DKIM_PRIVATE_KEY "
                "(or OPSDASH_DKIM_PRIVATE_KEY_FILE) together, or none to send unsigned.",
                id="campaigns.E101",
            )
        ]
    if not settings.OPSDASH_DKIM_DOMAIN:
        return []
    return _dkim_names() + _dkim_key()


def _dkim_names() -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    domain, selector = settings.OPSDASH_DKIM_DOMAIN, settings.OPSDASH_DKIM_SELECTOR
    if not dns_name_valid(domain, dotted=True):
        problems.append(
            Error(
                f"OPSDASH_DKIM_DOMAIN={domain!r} is not a domain name.",
                hint="The domain of the From addresses, such as example.com.",
                id="campaigns.E102",
            )
        )
    if not dns_name_valid(selector, dotted=False):
        problems.append(
            Error(
                f"OPSDASH_DKIM_SELECTOR={selector!r} is not a DKIM selector.",
                hint="Letters, digits and hyphens, such as opsdash2026: the key is published "
                "at <selector>._domainkey.<domain>.",
                id="campaigns.E103",
            )
        )
    return problems


def _dkim_key() -> list[CheckMessage]:
    try:
        key = dkim_key_parse(settings.OPSDASH_DKIM_PRIVATE_KEY)
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="campaigns.E104")]
    if key.key_size < RECOMMENDED_KEY_BITS:
        return [
            CheckWarning(
                f"OPSDASH_DKIM_PRIVATE_KEY is a {key.key_size}-bit RSA key.",
                hint=f"Use {RECOMMENDED_KEY_BITS} bits: shorter keys are being phased out.",
                id="campaigns.W105",
            )
        ]
    return []


def channel_backends() -> list[str]:
    """The backend of each channel entry that parses (``check_channels`` reports the rest)."""
    backends = []
    for entry in settings.OPSDASH_CHANNELS:
        try:
            backends.append(channel_entry_parse(entry).backend)
        except ImproperlyConfigured:
            continue
    return backends


@register(Tags.security)
def check_channels(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: object
) -> list[CheckMessage]:
    """OPSDASH_CHANNELS and OPSDASH_DEFAULT_CHANNEL make sense, before any launch needs them."""
    try:
        channels_parse(settings.OPSDASH_CHANNELS, settings.OPSDASH_DEFAULT_CHANNEL)
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="campaigns.E200")]
    return []


@register(Tags.security)
def check_esps(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: object
) -> list[CheckMessage]:
    """Each ESP channel has what its backend needs to send."""
    problems: list[CheckMessage] = []
    anymail: dict[str, object] = getattr(settings, "ANYMAIL", {})
    for backend in sorted(set(channel_backends())):
        esp = ESPS.get(backend)
        if esp is None:
            continue
        if esp.setting and not anymail.get(esp.setting):
            problems.append(
                Error(
                    f"The {backend} channel has no ANYMAIL_{esp.setting}.",
                    hint=f"Set ANYMAIL_{esp.setting} (or ANYMAIL_{esp.setting}_FILE).",
                    id="campaigns.E203",
                )
            )
        if esp.module and importlib.util.find_spec(esp.module) is None:
            problems.append(
                Error(
                    f"The {backend} channel needs the {esp.module} package, not installed.",
                    hint=f"Install django-anymail[{esp.extra}].",
                    id="campaigns.E204",
                )
            )
    if "mailgun" in channel_backends() and not anymail.get("MAILGUN_WEBHOOK_SIGNING_KEY"):
        problems.append(
            CheckWarning(
                "Mailgun webhooks are checked against ANYMAIL_MAILGUN_API_KEY.",
                hint="Set ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY to Mailgun's HTTP webhook signing "
                "key: accounts created since 2019 have one apart from the API key.",
                id="campaigns.W205",
            )
        )
    return problems


def _webhook_secrets() -> list[str]:
    secret = getattr(settings, "ANYMAIL", {}).get("WEBHOOK_SECRET") or []
    return [secret] if isinstance(secret, str) else [str(item) for item in secret]


def _open_webhooks() -> list[str]:
    """ESP channels whose webhooks would accept anyone's events: no secret to check them by."""
    if _webhook_secrets():
        return []
    return sorted({b for b in channel_backends() if b != "smtp" and b not in SIGNED_WEBHOOKS})


def _open_webhooks_message(backends: list[str], *, error: bool) -> CheckMessage:
    level = Error if error else CheckWarning
    return level(
        f"ANYMAIL_WEBHOOK_SECRET is empty: the webhooks of {', '.join(backends)} would accept "
        "events from anyone.",
        hint="Set ANYMAIL_WEBHOOK_SECRET=user:password (random, long) and put the same "
        "credentials in the webhook URLs given to the ESP: https://user:password@host/anymail/...",
        id="campaigns.E201" if error else "campaigns.W201",
    )


@register(Tags.security)
def check_webhooks(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: object
) -> list[CheckMessage]:
    """A webhook secret of the form user:password; a warning without one (error in production)."""
    problems: list[CheckMessage] = [
        Error(
            "ANYMAIL_WEBHOOK_SECRET must be user:password (basic auth credentials).",
            hint="Both parts non-empty, separated by the first colon.",
            id="campaigns.E202",
        )
        for secret in _webhook_secrets()
        if not all(secret.partition(":")[::2])
    ]
    backends = _open_webhooks()
    if backends:
        problems.append(_open_webhooks_message(backends, error=settings.PRODUCTION))
    return problems


@register(Tags.security, deploy=True)
def check_webhooks_deploy(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: object
) -> list[CheckMessage]:
    """``check --deploy`` refuses open webhooks (production settings already do, above)."""
    backends = _open_webhooks()
    if not backends or settings.PRODUCTION:
        return []
    return [_open_webhooks_message(backends, error=True)]


@register(Tags.security)
def check_bounce_domain(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: object
) -> list[CheckMessage]:
    domain = settings.OPSDASH_BOUNCE_DOMAIN
    if not domain or dns_name_valid(domain, dotted=True):
        return []
    return [
        Error(
            f"OPSDASH_BOUNCE_DOMAIN={domain!r} is not a domain name.",
            hint="A domain whose MX leads to `manage.py bounces`, such as bounces.example.com.",
            id="campaigns.E301",
        )
    ]
