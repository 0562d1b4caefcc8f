"""``manage.py play_bounce <delivery_id> [--kind hard|soft|complaint]``: make a delivery bounce.

Writes the DSN (or complaint) a mailbox provider would send about that delivery's message and
sends it to the bounce receiver, as the demo mailbox's "Play a bounce" does.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaigns.models import Delivery
from campaigns.services.bounces import PlayKind, bounce_play, returned_for_delivery


class Command(BaseCommand):
    help = "Sends a realistic bounce (or complaint) for one delivery to the bounce receiver."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("delivery_id", type=int)
        parser.add_argument(
            "--kind", choices=[kind.value for kind in PlayKind], default=PlayKind.HARD.value
        )

    def handle(self, *args: Any, delivery_id: int, kind: str, **options: Any) -> None:
        delivery = (
            Delivery.objects.select_related("send__campaign", "recipient")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            raise CommandError(f"No delivery {delivery_id}.")
        played = bounce_play(kind=PlayKind(kind), returned=returned_for_delivery(delivery))
        style = self.style.SUCCESS if played.over_smtp else self.style.WARNING
        self.stdout.write(style(f"{kind} bounce for delivery {delivery_id}: {played.detail}"))
