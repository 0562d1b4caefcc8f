"""Finding addresses on the suppression list."""

from __future__ import annotations

from django.db.models import QuerySet

from campaigns.models import Suppression


def suppressions_matching(queryset: QuerySet[Suppression], term: str) -> QuerySet[Suppression]:
    """ "@example.com" finds the domain (the list is small next to the recipients, so a scan
    of it is cheap); anything else is the start of an address, on the unique index (whose
    pattern-ops twin serves LIKE 'prefix%')."""
    value = term.strip().lower()
    if value.startswith("@"):
        return queryset.filter(email__endswith=value)
    return queryset.filter(email__startswith=value)
