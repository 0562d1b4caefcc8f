"""A campaign's templates compiled, and its fixed headers encoded, once per version per process."""

from __future__ import annotations

from campaigns.models import Campaign
from campaigns.services.mime import WireFrame, wire_frame
from campaigns.services.rendering import CompiledCampaign, campaign_compile_for

_compiled_cache: dict[tuple[int, str], tuple[CompiledCampaign, WireFrame]] = {}


def compiled_for(campaign: Campaign) -> CompiledCampaign:
    return compiled_with_frame(campaign)[0]


def compiled_with_frame(campaign: Campaign) -> tuple[CompiledCampaign, WireFrame]:
    """Keyed by the campaign's last edit, so an edited campaign compiles afresh."""
    key = (campaign.pk, campaign.updated_at.isoformat())
    cached = _compiled_cache.get(key)
    if cached is None:
        if len(_compiled_cache) > 64:
            _compiled_cache.clear()
        compiled = campaign_compile_for(campaign)
        cached = _compiled_cache[key] = (compiled, wire_frame(compiled))
    return cached
