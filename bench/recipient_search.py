"""Recipient search at scale: an exact address and a domain, each answered by an index.

    .venv/bin/python bench/recipient_search.py --json

On the services profile with its own database (``BENCH_DATABASE_URL``, by default
opsdash_bench_search, created, migrated and filled by ``manage.py loadscale`` if missing):

1. Adds, once, a small domain beside the million ``@example.com`` addresses (1,000 addresses
   at ``rare.example.org``), so a selective domain search has something to find.
2. For each search, takes the recipients changelist's own query (the admin's
   ``get_search_results`` and ordering, first page) and runs ``EXPLAIN (ANALYZE, BUFFERS)``,
   noting the indexes the plan reads and its execution time; a plain ``LIKE '%@domain'`` on
   the same table is measured beside it, as the scan the index avoids.
3. Requests each search page through the whole Django stack as a superuser, ``--requests``
   times, and keeps the median and p95 server time.
4. Prints one JSON line: {"recipients": N, "searches": {name: {...}}}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/opsdash_bench_search"
RARE_DOMAIN = "rare.example.org"
RARE_COUNT = 1_000


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def configure() -> None:
    os.environ.setdefault("OPSDASH_PROFILE", "services")
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    os.environ.setdefault("OPSDASH_REDIS_PREFIX", "bench-search")
    os.environ.setdefault("OPSDASH_QUEUE_PREFIX", "bench-search-")
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsdash.settings")


def prepare() -> None:
    """Creates, migrates and fills the database (in a child, so this process stays clean)."""
    env = dict(os.environ)
    manage = [sys.executable, str(ROOT / "manage.py")]
    script = "from campaigns.management.commands.demo import _ensure_database; _ensure_database()"
    subprocess.run([*manage, "shell", "-c", script], env=env, check=True, cwd=ROOT)
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=ROOT)
    subprocess.run([*manage, "loadscale"], env=env, check=True, cwd=ROOT)


def add_rare_domain() -> None:
    from django.db import connection

    from campaigns.models import Recipient

    if Recipient.objects.filter(email=f"rare1@{RARE_DOMAIN}").exists():
        return
    table = connection.ops.quote_name(Recipient._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (email, first_name, last_name, attributes, status, "
            "created_at, updated_at) SELECT 'rare' || n || '@' || %s, 'Rare', 'Domain', "
            "'{}'::jsonb, 'active', now(), now() FROM generate_series(1, %s) AS n",
            [RARE_DOMAIN, RARE_COUNT],
        )
        cursor.execute(f"ANALYZE {table}")


def searches() -> dict[str, str]:
    return {
        "exact_address": "scale500000@example.com",
        "exact_address_typed_in_capitals": "  Scale500000@Example.COM ",
        "domain_rare_with_at": f"@{RARE_DOMAIN}",
        "domain_rare_bare": RARE_DOMAIN,
        "domain_absent": "@nobody.example.net",
        "domain_of_a_million": "@example.com",
    }


def changelist_sql(term: str) -> tuple[str, list[Any]]:
    """The first page of the recipients changelist for ``term``, as the admin builds it."""
    from django.contrib import admin
    from django.test import RequestFactory

    from campaigns.models import Recipient

    model_admin = admin.site._registry[Recipient]
    request = RequestFactory().get("/", {"q": term})
    queryset, _ = model_admin.get_search_results(request, Recipient.objects.all(), term)
    page = queryset.order_by(*(Recipient._meta.ordering or ["id"]))[:50]
    sql, params = page.query.sql_with_params()
    return sql, list(params)


def explain(sql: str, params: list[Any]) -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) {sql}", params)
        lines = [row[0] for row in cursor.fetchall()]
    text = "\n".join(lines)
    timing = re.search(r"Execution Time: ([\d.]+) ms", text)
    return {
        "execution_ms": float(timing.group(1)) if timing else None,
        "indexes": sorted(set(re.findall(r"using (\w+)", text))),
        "seq_scan": "Seq Scan" in text,
        "plan": lines,
    }


def like_scan(domain: str) -> dict[str, Any]:
    """What a search without the index costs: every address compared with the pattern."""
    from django.db import connection

    from campaigns.models import Recipient

    table = connection.ops.quote_name(Recipient._meta.db_table)
    sql = f"SELECT id FROM {table} WHERE email LIKE %s ORDER BY id LIMIT 50"
    return explain(sql, [f"%@{domain}"])


def page_times(term: str, requests: int) -> dict[str, float]:
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    user, _ = User.objects.get_or_create(
        username="bench-search", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    url = reverse("admin:campaigns_recipient_changelist")
    client.get(url, {"q": term})  # warm-up
    samples = []
    for _ in range(requests):
        began = time.perf_counter()
        response = client.get(url, {"q": term})
        samples.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.status_code
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 1),
    }


def recipient_page(requests: int, *, plans: bool) -> dict[str, Any]:
    """One person's page: their deliveries come from Delivery's (recipient, send) index."""
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    from campaigns.models import Delivery, Recipient
    from campaigns.selectors.recipients import RECIPIENT_PAGE_DELIVERIES

    delivery = Delivery.objects.order_by("-id").only("recipient_id").first()
    assert delivery is not None, "load the scale data first"
    recipient = Recipient.objects.get(pk=delivery.recipient_id)
    rows = (
        Delivery.objects.filter(recipient_id=recipient.pk)
        .select_related("send__campaign")
        .order_by("-id")[: RECIPIENT_PAGE_DELIVERIES + 1]
    )
    sql, params = rows.query.sql_with_params()
    plan = explain(sql, list(params))
    if plans:
        log("recipient_page deliveries:\n  " + "\n  ".join(plan["plan"]))
    client = Client()
    client.force_login(User.objects.get(username="bench-search"))
    url = reverse("admin:campaigns_recipient_change", args=[recipient.pk])
    client.get(url)
    samples = []
    for _ in range(requests):
        began = time.perf_counter()
        assert client.get(url).status_code == 200
        samples.append((time.perf_counter() - began) * 1000)
    entry = {k: v for k, v in plan.items() if k != "plan"}
    return {**entry, "median_ms": round(statistics.median(samples), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--json", action="store_true", help="only the JSON line on stdout")
    parser.add_argument("--plans", action="store_true", help="the full plans on stderr")
    args = parser.parse_args()
    configure()
    if not args.skip_load:
        prepare()
    import django

    django.setup()
    from campaigns.models import Recipient

    add_rare_domain()
    report: dict[str, Any] = {"recipients": Recipient.objects.count(), "searches": {}}
    for name, term in searches().items():
        sql, params = changelist_sql(term)
        plan = explain(sql, params)
        if args.plans:
            log(f"{name}:\n  " + "\n  ".join(plan["plan"]))
        entry = {k: v for k, v in plan.items() if k != "plan"}
        report["searches"][name] = {"term": term, **entry, **page_times(term, args.requests)}
    scan = like_scan(RARE_DOMAIN)
    report["like_scan_without_index_ms"] = scan["execution_ms"]
    report["recipient_page"] = recipient_page(args.requests, plans=args.plans)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
