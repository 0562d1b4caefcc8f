"""Pacing: how fast a send may go to each mailbox provider, and how much today.

The batch loop asks a ``Pacer`` before every hand-over to the channel and tells it what the
channel answered. The pacer owns every limit a message must pass (the relay's or the ESP's
rate, the campaign's own cap, the provider's adaptive rate and the warm-up quota), so the loop
never sleeps on one provider while another's recipients could go.
"""

from __future__ import annotations

from campaigns.services.pacing.pacer import Grant, Pacer, WaitReason
from campaigns.services.pacing.providers import Provider, provider_of

__all__ = ["Grant", "Pacer", "Provider", "WaitReason", "provider_of"]
