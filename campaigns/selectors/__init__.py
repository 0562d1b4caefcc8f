"""Read-side queries for the admin and the dashboard, one module per area.

- dashboard: the dashboard's numbers (estimates, counters, outcomes per hour, upcoming, stalled)
- sends: one send's progress from its rows, its deliveries and the results of its tasks
- deliveries: counts over a send's rows (imports no service: the delivery services use it)
- audiences: who an audience's members are (the launch and the confirmation share it), sizes
- unsubscribe: what the unsubscribe page shows about a link
- campaigns: the campaign page's preview recipient and test-message task state
- system: workers online and queue depths (the broker I/O itself is services.broker)
- imports: an import job's sample rows, progress and rejected rows
- health: whether a running send waits for a service, in words for the pages
- cache: cache reads that compute the value themselves while Redis is out
- recipients: the recipients' search (exact address, domain) and one person's page
- audit: audit entries in words (who, what, details as rows)
- tasks: Celery task results in words (title, duration, output)
- zoned: times as pages show them, with the zone's abbreviation

Callers import from the area module (``from campaigns.selectors import sends``).
"""
