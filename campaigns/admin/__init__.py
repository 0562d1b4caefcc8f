"""The admin, one module per model family. Actions only call services."""

from campaigns.admin import (
    audiences,
    audit,
    bounces,
    campaigns,
    celery,
    imports,
    layouts,
    security,
    seeds,
    sends,
    suppressions,
    warmup,
)

__all__ = [
    "audiences",
    "audit",
    "bounces",
    "campaigns",
    "celery",
    "imports",
    "layouts",
    "security",
    "seeds",
    "sends",
    "suppressions",
    "warmup",
]
