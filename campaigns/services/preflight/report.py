"""What the pre-flight checks find: one Finding per check, gathered in a PreflightReport."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from django.utils import timezone


class Severity(StrEnum):
    # BLOCK: a rule Gmail and Yahoo apply to bulk senders fails; sending waits for a fix or an
    # approver's override. WARN: worth fixing, or could not be checked. OK: checked and fine.
    BLOCK = "block"
    WARN = "warn"
    OK = "ok"


class Group(StrEnum):
    AUTHENTICATION = "Sender authentication"
    MESSAGE = "Message"


@dataclass(frozen=True)
class Finding:
    code: str  # stable: overrides and the audit trail name findings by it
    severity: Severity
    title: str  # a few words: "SPF record"
    message: str  # what was found, and what to publish or change
    group: Group = Group.AUTHENTICATION


@dataclass(frozen=True)
class PreflightReport:
    findings: tuple[Finding, ...]
    checked_at: datetime = field(default_factory=timezone.now)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.BLOCK]

    @property
    def blocking_codes(self) -> list[str]:
        return sorted({f.code for f in self.blocking})

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARN]

    def of_group(self, group: Group) -> list[Finding]:
        return [f for f in self.findings if f.group is group]
