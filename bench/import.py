"""Recipient import benchmark: the import pipeline against django-import-export's default path.

    .venv/bin/python bench/import.py --rows 1000000 --json

Generates an N-row CSV with invalid and duplicate rows, imports it as an ImportJob through a
real Celery worker (solo pool, so the worker process is the importing process) on the services
profile, then imports a smaller file through a plain ModelResource's import_data (the
library's default, row-by-row path; the app itself only exports through the library).
Prints one JSON line:

    {"rows", "rows_per_s", "baseline_rows_per_s", "ratio", "peak_rss_mb", "invalid_reported"}

rows_per_s is N over the wall time from publishing the task to seeing the job finished;
peak_rss_mb is the worker's peak resident set size; invalid_reported is the number of rows the
report marks invalid (the script exits 1 unless it equals the number generated as invalid).
The benchmark uses its own database (created if missing) and queue prefix.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/opsdash_bench_import"
PREFIX = "bench-imp-"


def environment(var_dir: str) -> dict[str, str]:
    env = {
        "OPSDASH_PROFILE": "services",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB),
        "OPSDASH_QUEUE_PREFIX": PREFIX,
        "OPSDASH_REDIS_PREFIX": "bench-imp",
        "OPSDASH_VAR_DIR": var_dir,
        "OPSDASH_LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "false",
    }
    os.environ.update(env)
    return {**os.environ, **env}


def database_ensure(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def csv_generate(path: Path, rows: int, domain: str) -> int:
    """Every 97th row has a broken address and every 53rd repeats an earlier address.

    Returns the number of invalid rows written.
    """
    invalid = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "last_name", "city", "plan"])
        for i in range(rows):
            if i % 97 == 96:
                email = f"broken-{i}.{domain}"
                invalid += 1
            elif i % 53 == 52:
                email = f"Person{i // 2}@{domain}"
            else:
                email = f"Person{i}@{domain}"
            writer.writerow([email, f"First{i}", "Tester", ("Oslo", "Lima", "Pune")[i % 3], ""])
    return invalid


def data_reset() -> None:
    from django.db import connection

    from campaigns.models import AuditEntry, ImportJob, Recipient, Subscription, TaskLink

    models = (Subscription, Recipient, AuditEntry, TaskLink, ImportJob)
    tables = ", ".join(model._meta.db_table for model in models)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def worker_start(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    log = Path(env["OPSDASH_VAR_DIR"]).parent / "worker.log"
    args = [sys.executable, "-m", "celery", "-A", "opsdash", "worker", "-Q", f"{PREFIX}imports"]
    args += ["-P", "solo", "-l", "info", "--without-gossip", "--without-mingle"]
    args += ["--without-heartbeat", "-n", f"bench-import-{os.getpid()}@%h"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def worker_wait_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the worker logs "ready." (a ping can answer before it consumes its queue)."""
    deadline = time.monotonic() + 60
    while "ready." not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited early:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not start")
        time.sleep(0.1)


def background_run(path: Path, rows: int, env: dict[str, str]) -> tuple[float, float, int, str]:
    """(seconds, peak RSS in MB, invalid rows reported, final message) of the background path."""
    from django.core.files import File

    from campaigns import publishers
    from campaigns.models import Audience, ImportJob
    from campaigns.services.imports import import_job_create, import_job_start

    audience = Audience.objects.create(name=f"bench {time.time()}")
    with path.open("rb") as handle:
        job = import_job_create(upload=File(handle, name=path.name), audience=audience,
                                created_by=None)  # fmt: skip
    proc, log = worker_start(env)
    try:
        worker_wait_ready(proc, log)
        started = time.monotonic()
        import_job_start(job=job, columns=job.mapping["columns"], by=None,
                         publish=publishers.publish_import)  # fmt: skip
        while True:
            job.refresh_from_db()
            if job.status not in (ImportJob.Status.PENDING, ImportJob.Status.RUNNING):
                break
            time.sleep(0.1)
        seconds = time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if job.status != ImportJob.Status.COMPLETED:
        sys.stderr.write(log.read_text()[-4000:])
        raise RuntimeError(f"the import ended {job.status}: {job.message}")
    invalid = 0
    with job.error_report.open("rb") as handle:
        for row in csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8")):
            invalid += row["outcome"] == "invalid"
    assert job.started_at and job.finished_at
    in_worker = (job.finished_at - job.started_at).total_seconds()
    message = f"{job.message} ({in_worker:.1f}s inside the worker)"
    return seconds, peak_mb, invalid, message


def baseline_run(path: Path, rows: int) -> float:
    """django-import-export's default path: import_data over a Dataset, row by row."""
    import tablib
    from import_export import resources

    from campaigns.models import Recipient

    class BaselineResource(resources.ModelResource):
        class Meta:
            model = Recipient
            import_id_fields = ("email",)
            fields = ("email", "first_name", "last_name")

    dataset = tablib.Dataset().load(path.read_text(encoding="utf-8"), format="csv")
    started = time.monotonic()
    result = BaselineResource().import_data(dataset, dry_run=False, raise_errors=False)
    seconds = time.monotonic() - started
    sys.stderr.write(f"baseline: {rows} rows in {seconds:.1f}s, totals {dict(result.totals)}\n")
    return rows / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=5_000)
    parser.add_argument("--json", action="store_true", help="print only the JSON line on stdout")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        return run(options, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the CSVs and the stored upload: ~110 MB


def run(options: argparse.Namespace, work: Path) -> int:
    env = environment(str(work / "var"))
    database_ensure(os.environ["DATABASE_URL"])
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsdash.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    data_reset()

    big = work / "recipients.csv"
    expected_invalid = csv_generate(big, options.rows, "bench.example.com")
    seconds, peak_mb, invalid, message = background_run(big, options.rows, env)
    sys.stderr.write(f"background: {options.rows} rows in {seconds:.1f}s; {message}\n")
    sys.stderr.write(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")

    small = work / "baseline.csv"
    baseline_rows = min(options.rows, options.baseline_rows)
    csv_generate(small, baseline_rows, "baseline.example.com")
    baseline = baseline_run(small, baseline_rows)

    rate = options.rows / seconds
    line = {
        "rows": options.rows,
        "rows_per_s": round(rate),
        "baseline_rows_per_s": round(baseline),
        "ratio": round(rate / baseline, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "invalid_reported": invalid,
    }
    print(json.dumps(line))
    if invalid != expected_invalid:
        sys.stderr.write(f"expected {expected_invalid} invalid rows in the report\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
