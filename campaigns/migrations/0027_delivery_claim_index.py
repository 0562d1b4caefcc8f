"""Delivery indexes that keep a batch's claim and outcome writes cheap on any plan.

The send/status index gains the id, so a claim (send, status, id range) reads only its own
rows even when the planner has no statistics yet for a send just launched: before, it could
walk every queued row of the send for each batch. The partial index of rows in ``sending``
and the sent_at index go: the first grew with every claim and lured the outcome write into
scanning it, the second served no query. The new index is built before the old one goes.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0026_shipped_layouts"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                fields=["send", "status", "id"], name="delivery_send_status_id_idx"
            ),
        ),
        migrations.RemoveIndex(model_name="delivery", name="delivery_send_status_idx"),
        migrations.RemoveIndex(model_name="delivery", name="delivery_sending_claim_idx"),
        migrations.RemoveIndex(model_name="delivery", name="delivery_sent_at_idx"),
    ]
