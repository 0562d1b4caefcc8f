"""Admin speed at scale: every changelist and the dashboard with 1M rows behind them.

    .venv/bin/python bench/admin.py --json

On the services profile with its own database (``BENCH_DATABASE_URL``, by default
opsdash_bench_admin, created and migrated if missing):

1. Loads the scale data once (``manage.py loadscale``: 1M recipients and subscriptions,
   1M deliveries, 100k task results with their links, 20k audit entries), kept between runs.
2. Logs in a superuser (who sees every column, filter and action) and requests each page
   through the whole Django stack in this process (middleware, admin, templates), a few times
   to warm up and then ``--requests`` times, the pages taking turns, timing each request:
   server time (wall clock, database included), no network. The process's own CPU time per
   request and the machine's load average go to stderr: on a shared machine they tell a slow
   page from a busy neighbour.
3. Prints one JSON line: {"pages": {"<name>": p95_ms, ...}, "max_p95_ms": ...}.

The dashboard's numbers are cached for a few seconds by design; its uncached time is printed on
stderr too (``dashboard_uncached``) so a regression in the underlying queries stays visible.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Django is set up inside main(), so the runtime import waits until then
    from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/opsdash_bench_admin"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def configure() -> None:
    os.environ.setdefault("OPSDASH_PROFILE", "services")
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    os.environ.setdefault("OPSDASH_REDIS_PREFIX", "bench-adm")
    os.environ.setdefault("OPSDASH_QUEUE_PREFIX", "bench-adm-")
    os.environ["DJANGO_DEBUG"] = "0"  # no query log: time what production would spend
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsdash.settings")


def prepare(skip_load: bool) -> None:
    """Creates, migrates and fills the bench database (in a child, so this process stays clean)."""
    env = dict(os.environ)
    manage = [sys.executable, str(ROOT / "manage.py")]
    script = "from campaigns.management.commands.demo import _ensure_database; _ensure_database()"
    subprocess.run([*manage, "shell", "-c", script], env=env, check=True, cwd=ROOT)
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=ROOT)
    if not skip_load:
        subprocess.run([*manage, "loadscale"], env=env, check=True, cwd=ROOT)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[index]


def pages() -> dict[str, str]:
    from django.urls import reverse

    from campaigns.models import Campaign, Recipient, Send

    send = Send.objects.order_by("-id").first()
    campaign = Campaign.objects.order_by("-id").first()
    recipient = Recipient.objects.order_by("-id").first()
    assert send and campaign and recipient, "load the scale data first"
    domain = recipient.email.rpartition("@")[2]

    def changelist(name: str) -> str:
        return reverse(f"admin:{name}_changelist")

    deliveries = changelist("campaigns_delivery")
    results = changelist("django_celery_results_taskresult")
    return {
        "dashboard": reverse("admin:index"),
        "campaigns": changelist("campaigns_campaign"),
        "sends": changelist("campaigns_send"),
        "deliveries": deliveries,
        "deliveries_failed": f"{deliveries}?status__exact=failed",
        "deliveries_of_a_send": f"{deliveries}?send__id__exact={send.pk}",
        "deliveries_by_email": f"{deliveries}?q={recipient.email}",
        "recipients": changelist("campaigns_recipient"),
        "recipients_by_email": f"{changelist('campaigns_recipient')}?q={recipient.email}",
        "recipients_by_domain": f"{changelist('campaigns_recipient')}?q=@{domain}",
        "recipient_page": reverse("admin:campaigns_recipient_change", args=[recipient.pk]),
        "audiences": changelist("campaigns_audience"),
        "subscriptions": changelist("campaigns_subscription"),
        "imports": changelist("campaigns_importjob"),
        "audit_trail": changelist("campaigns_auditentry"),
        "task_results": results,
        "task_results_of_a_send": f"{results}?send={send.pk}",
        "task_results_failed": f"{results}?status=FAILURE",
        "periodic_tasks": changelist("django_celery_beat_periodictask"),
        "send_page": reverse("admin:campaigns_send_change", args=[send.pk]),
        "send_page_live": reverse("admin:campaigns_send_live", args=[send.pk]),
        "campaign_page": reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
    }


def measure(
    client: Client, urls: dict[str, str], *, warmup: int, requests: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and this process's CPU milliseconds per request, for every page.

    The pages take turns (round robin), so a burst of load from elsewhere on the machine
    lands on all of them alike instead of on whichever page happened to be measured then.
    """
    wall: dict[str, list[float]] = {name: [] for name in urls}
    cpu: dict[str, list[float]] = {name: [] for name in urls}
    for index in range(warmup + requests):
        for name, url in urls.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            elapsed = (time.perf_counter() - started) * 1000
            elapsed_cpu = (time.process_time() - started_cpu) * 1000
            if response.status_code != 200:
                raise SystemExit(f"{url} answered {response.status_code}")
            if index >= warmup:
                wall[name].append(elapsed)
                cpu[name].append(elapsed_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print only the JSON line on stdout")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--skip-load", action="store_true", help="measure whatever is loaded")
    parser.add_argument("--only", nargs="*", help="page names to measure")
    args = parser.parse_args()

    configure()
    prepare(args.skip_load)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client

    from campaigns.selectors.dashboard import STATS_CACHE_KEY, dashboard_stats

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)

    urls = {name: url for name, url in pages().items() if not args.only or name in args.only}
    load_before = os.getloadavg()[0]
    wall, cpu = measure(client, urls, warmup=args.warmup, requests=args.requests)
    results: dict[str, float] = {}
    for name in urls:
        p95 = round(percentile(wall[name], 0.95), 1)
        log(
            f"{name:26} p50 {percentile(wall[name], 0.5):7.1f} ms   p95 {p95:7.1f} ms   "
            f"(this process's CPU: p95 {percentile(cpu[name], 0.95):6.1f} ms)"
        )
        results[name] = p95
    load_after = os.getloadavg()[0]
    log(f"load average {load_before:.1f} before, {load_after:.1f} after, {os.cpu_count()} cores")

    uncached = []
    for _ in range(5):
        cache.delete(STATS_CACHE_KEY)
        started = time.perf_counter()
        dashboard_stats()
        uncached.append((time.perf_counter() - started) * 1000)
    log(f"dashboard_uncached (queries only) median {sorted(uncached)[2]:.1f} ms")

    line = {"pages": results, "max_p95_ms": max(results.values()) if results else None}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
