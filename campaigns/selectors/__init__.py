"""Read-side queries for the admin and the dashboard, one module per area.

- dashboard: the dashboard's numbers (estimates, counters, outcomes per hour, upcoming, stalled)
- sends: one send's deliveries and the results of its tasks
- campaigns: the campaign page's preview recipient and test-message task state
- system: workers online and queue depths (the broker I/O itself is services.broker)

Import from the area module. The names below are re-exported for callers that still use
``selectors.<name>``.
"""

from __future__ import annotations

from campaigns.selectors.campaigns import preview_recipient, task_state
from campaigns.selectors.sends import SEND_PAGE_ROWS, send_deliveries, send_task_results

__all__ = [
    "SEND_PAGE_ROWS",
    "preview_recipient",
    "send_deliveries",
    "send_task_results",
    "task_state",
]
