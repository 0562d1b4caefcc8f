"""What every stage of an import shares: its two errors and the counts it reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from campaigns.models import ImportJob


class ImportFileError(ValueError):
    """The file cannot be imported as a whole; the message is shown to the staff member."""


class ImportCancelled(Exception):
    """A cancel was requested; the stage that notices it stops and nothing is written."""


@dataclass
class ImportCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    invalid: int = 0
    # Set when the file had more addresses than the parser dedupes in memory.
    needs_dedupe: bool = False
    # Opted-out or suppressed addresses a "resubscribe" import made active again, and the
    # first RESUBSCRIBED_IDS_KEPT of their recipient ids, for the audit trail.
    resubscribed: int = 0
    resubscribed_ids: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"Done: {self.created:,} created, {self.updated:,} updated, "
            f"{self.unchanged:,} unchanged, {self.skipped:,} skipped, {self.invalid:,} invalid."
        )

    def as_changes(self) -> dict[str, int]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "invalid": self.invalid,
        }


def cancel_check(job: ImportJob) -> None:
    """Raises ImportCancelled when a staff member asked to cancel since the job started."""
    if ImportJob.objects.filter(pk=job.pk, cancel_requested=True).exists():
        raise ImportCancelled


def megabytes(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:,.0f} KB"
    return f"{size / (1024 * 1024):,.1f} MB"
