"""The admin, one module per model family. Actions only call services."""

from campaigns.admin import audiences, audit, campaigns, celery, imports, security, seeds, sends

__all__ = ["audiences", "audit", "campaigns", "celery", "imports", "security", "seeds", "sends"]
