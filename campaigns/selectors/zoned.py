"""Times as the admin shows them: in the site's time zone, with the zone's name beside them."""

from __future__ import annotations

from datetime import datetime

from django.utils import dateformat, timezone

# "25 Nov 2026, 18:20:05 UTC": the zone abbreviation tells a reader in another zone which
# clock the time is on, so nobody has to know what the server is set to.
ZONED_FORMAT = "j M Y, H:i:s T"


def zoned(moment: datetime | None, *, empty: str = "—") -> str:
    """A time in the current time zone, with the zone's abbreviation; ``empty`` for None."""
    if moment is None:
        return empty
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return dateformat.format(timezone.localtime(moment), ZONED_FORMAT)
