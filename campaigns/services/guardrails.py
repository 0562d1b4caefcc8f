"""Guardrails: a send pauses itself before its bounces or complaints hurt the sending domain."""

from __future__ import annotations

from campaigns.models import Guardrail


def send_guard(*, send_id: int) -> Guardrail | None:
    """Checks the send's rates against the guardrails; pauses it when one is passed.

    Called after each write of a batch's outcomes and after each applied chunk of events.
    Returns the guardrail that paused the send, or None.
    """
    return None
