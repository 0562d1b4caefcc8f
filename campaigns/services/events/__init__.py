"""What happens to a message after it leaves: events stored as received, then applied in bulk.

``store`` is the cheap part every receiver calls (webhooks, the bounce receiver): it inserts the
events, deduplicated, and asks for an apply run. ``apply`` is the worker's part: it links events
to deliveries, suppresses addresses, and moves the per-send counters, once per delivery.
"""
