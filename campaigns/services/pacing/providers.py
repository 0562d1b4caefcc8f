"""Which mailbox provider receives an address, from a maintained table of their domains."""

from __future__ import annotations

from django.db import models


class Provider(models.TextChoices):
    GOOGLE = "google", "Google"
    MICROSOFT = "microsoft", "Microsoft"
    YAHOO = "yahoo", "Yahoo/AOL"
    APPLE = "apple", "Apple"
    GMX = "gmx", "GMX/Web.de"
    OTHER = "other", "Other"


PROVIDER_DOMAINS: dict[str, Provider] = {
    "gmail.com": Provider.GOOGLE,
    "googlemail.com": Provider.GOOGLE,
    "outlook.com": Provider.MICROSOFT,
    "hotmail.com": Provider.MICROSOFT,
    "live.com": Provider.MICROSOFT,
    "msn.com": Provider.MICROSOFT,
    "yahoo.com": Provider.YAHOO,
    "aol.com": Provider.YAHOO,
    "icloud.com": Provider.APPLE,
    "me.com": Provider.APPLE,
    "mac.com": Provider.APPLE,
    "gmx.de": Provider.GMX,
    "gmx.net": Provider.GMX,
    "web.de": Provider.GMX,
}


def provider_of(email: str) -> Provider:
    """The provider of an address's domain; OTHER for a domain the table does not know."""
    domain = email.rpartition("@")[2].lower()
    return PROVIDER_DOMAINS.get(domain, Provider.OTHER)
