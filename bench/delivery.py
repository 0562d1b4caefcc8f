"""Delivery benchmark: the full pipeline against the raw SMTP (or ESP API) limit of this machine.

    .venv/bin/python bench/delivery.py --recipients 100000 --json
    .venv/bin/python bench/delivery.py --channel postmark --recipients 20000 --json

``--channel postmark`` measures the same against an emulated Postmark API (bench/fastesp.py,
one server for both sides): the pipeline's workers send through a Postmark channel (the batch
endpoint, one call per group of messages); the raw limit is what a naive sender reaches, one
process per core each posting one message per ``POST /email`` over one reused
``requests.Session``, with the JSON anymail's Postmark backend builds for that message.

On the services profile (its own database, created if missing, and its own queue prefix):

1. Seeds N subscribed recipients in one audience (kept between runs; only missing ones added).
2. Raw limit: one process per core, each sending its share of the campaign's messages over one
   reused SMTP connection to a sink process of its own, with no broker and no database. Each
   process renders and encodes its messages with the same code the workers use (compiled
   templates, both signed links, the channel's compose with its DKIM step, the VERP envelope
   when a bounce domain is set), from recipients loaded before the clock starts: the only
   parts missing are RabbitMQ and PostgreSQL. Measured before and after the pipeline and
   averaged, since the machine is shared. (``raw_prebuilt_msgs_per_s`` on stderr
   is the same with messages encoded before the clock starts: SMTP alone.)
3. Full pipeline: ``send_launch`` (INSERT ... SELECT of the Delivery rows, batches published
   to RabbitMQ) -> Celery workers (prefork, ``--workers`` processes, cores + 1 by default) ->
   the same sink, Delivery and TaskResult rows written. Timed from the launch call to the Send
   completing (its ``finished_at``); ``launch_s`` is the launch call alone (rows inserted and
   every batch published).

CPU time per message for each path and component goes to stderr, to see where the time goes
(it moves less with other users' load than the rates do, though contention inflates it too).
4. Counts at the sink, by Message-ID: ``lost`` (a delivery never received) and ``duplicates``
   (messages received more than once).

The sink (bench/fastsink.py) is a minimal asyncio SMTP server, one process per core on one
port, that only records Message-IDs, so that it costs far less than either sender.

``--relay-latency-ms N`` makes the sink answer each DATA N ms late, as a distant relay does;
the workers then keep ``--connections`` SMTP sessions each (OPSDASH_DELIVERY_CONNECTIONS; 64
by default with a latency, the setting's default without), and the raw limit uses as many
sessions in all (threads in each raw process), so the ratio compares like with like.

Prints one JSON line:
    {"recipients", "pipeline_msgs_per_s", "raw_msgs_per_s", "ratio", "lost", "duplicates",
     "launch_s", "relay_latency_ms", "connections", "worker_rss_mb"}
``worker_rss_mb`` is the peak total resident memory of the worker processes (the Celery parent
and its pool), sampled every half second while the pipeline runs.
``--launch-only`` times the launch alone (no sending): for launch_s at 1,000,000 recipients
when a full run would take too long.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/opsdash_bench_delivery"
# Queues and Redis keys of their own (BENCH_PREFIX), so runs beside others do not mix.
PREFIX = os.environ.get("BENCH_PREFIX", "bench-dlv-")
CAMPAIGN_NAME = "Delivery benchmark"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def environment(var_dir: str, *, esp_port: int | None = None) -> dict[str, str]:
    env = {
        "OPSDASH_PROFILE": "services",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB),
        "OPSDASH_QUEUE_PREFIX": PREFIX,
        "OPSDASH_REDIS_PREFIX": PREFIX.rstrip("-"),
        "OPSDASH_VAR_DIR": var_dir,
        "OPSDASH_LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "false",  # DEBUG keeps every query in memory
    }
    if esp_port is not None:  # every send goes through a Postmark channel to the emulated API
        from bench.fastesp import TOKEN

        env |= {
            "OPSDASH_CHANNELS": "postmark=postmark",
            "OPSDASH_DEFAULT_CHANNEL": "postmark",
            "ANYMAIL_POSTMARK_SERVER_TOKEN": TOKEN,
            "ANYMAIL_POSTMARK_API_URL": f"http://127.0.0.1:{esp_port}/",
        }
    os.environ.update(env)
    return {**os.environ, **env}


def database_ensure(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def django_setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsdash.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# --- CPU accounting -------------------------------------------------------------------------
# The machine is shared, so rates move with everyone else's load; CPU time per message does not.


def _tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid] + [p for child in children for p in _tree(int(child))]


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of live processes, from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def postgres_backends() -> list[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return [int(row[0]) for row in cursor.fetchall()]


def children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- Data -----------------------------------------------------------------------------------


def recipients_seed(n: int) -> Any:
    """Recipients bench-1 ... bench-N, all subscribed to one audience; returns the campaign."""
    from django.db import connection

    from campaigns.models import Audience, Campaign, Delivery, Recipient, Send, Subscription

    audience, _ = Audience.objects.get_or_create(name="Delivery benchmark")
    r, s = Recipient._meta.db_table, Subscription._meta.db_table
    with connection.cursor() as cursor:
        # Earlier runs' sends go first: each run measures a fresh launch.
        cursor.execute(f"TRUNCATE {Delivery._meta.db_table}, {Send._meta.db_table} CASCADE")
        cursor.execute(
            f"""INSERT INTO {r} (email, first_name, last_name, attributes, status, created_at,
                                 updated_at)
                SELECT 'bench-' || g || '@example.com', 'First' || g, 'Tester',
                       '{{"city": "Oslo"}}'::jsonb, 'active', now(), now()
                FROM generate_series(1, %s) g
                ON CONFLICT (email) DO UPDATE SET status = 'active'
                WHERE {r}.status <> 'active'""",
            [n],
        )
        cursor.execute(
            f"""INSERT INTO {s} (recipient_id, audience_id, status, created_at, updated_at)
                SELECT id, %s, 'subscribed', now(), now() FROM {r}
                WHERE email LIKE 'bench-%%'
                  AND split_part(split_part(email, '@', 1), '-', 2)::int <= %s
                ON CONFLICT (audience_id, recipient_id) DO NOTHING""",
            [audience.pk, n],
        )
        cursor.execute(
            f"""DELETE FROM {s} WHERE audience_id = %s AND recipient_id IN (
                  SELECT id FROM {r} WHERE email LIKE 'bench-%%'
                    AND split_part(split_part(email, '@', 1), '-', 2)::int > %s)""",
            [audience.pk, n],
        )
        cursor.execute("ANALYZE")
    campaign, _ = Campaign.objects.get_or_create(
        name=CAMPAIGN_NAME,
        defaults={
            "subject": "Hello {{ recipient.first_name }}, what's new this month",
            "from_email": "Team <team@example.com>",
            "text_body": (
                "Hi {{ recipient.first_name }} from {{ recipient.attributes.city }},\n\n"
                + "Here is what changed this month. " * 12
                + "\n\nUnsubscribe: {{ unsubscribe_url }}\n"
            ),
            # Raw HTML without a layout: the per-message work measured is what it always was.
            "body_format": Campaign.BodyFormat.HTML,
            "body": (
                "<p>Hi {{ recipient.first_name }} from {{ recipient.attributes.city }},</p>"
                + "<p>Here is what changed this month.</p>" * 12
                + '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
            ),
        },
    )
    campaign.audiences.set([audience])
    return campaign


# --- Raw limit ------------------------------------------------------------------------------


def _raw_campaign(campaign_id: int) -> tuple[Any, Any]:
    """The campaign compiled and framed as a send freezes it; no database from here on."""
    from django.db import connections

    from campaigns.models import Campaign
    from campaigns.services.delivery.compiled import compiled_for
    from campaigns.services.mime import wire_frame

    compiled = compiled_for(Campaign.objects.get(pk=campaign_id))
    frame = wire_frame(compiled)
    connections.close_all()
    return compiled, frame


def _raw_outgoing(compiled: Any, frame: Any, rid: int, email: str, first: str, last: str) -> Any:
    """One recipient's message as the batch loop renders it (``sending._compose``): both
    links from one signature, the recipient's fields, its own Message-ID."""
    from campaigns.services.audiences import message_links
    from campaigns.services.channels import Outgoing
    from campaigns.services.rendering import message_render

    links = message_links(recipient_id=rid, send_id=0)
    fields = {
        "email": email,
        "first_name": first,
        "last_name": last,
        "attributes": {"city": "Oslo"},
    }
    rendered = message_render(
        compiled,
        recipient=fields,
        unsubscribe_url=links.unsubscribe_url,
        web_version_url=links.web_version_url,
    )
    message_id = f"<raw.rcpt-{rid}@bench>"
    name = f"{first} {last}"
    return Outgoing(rid, frame, rendered, email, name, message_id, links.unsubscribe_url)


def _raw_worker(
    rows: list[tuple[int, str, str, str]],
    campaign_id: int,
    prebuilt: bool,
    start: Any,
    out: Any,
    port: int,
    sessions: int = 1,
) -> None:
    import threading

    from django.conf import settings

    from campaigns.services.channels.smtp import SmtpChannel
    from campaigns.services.smtp import Outcome, SmtpSession
    from campaigns.services.verp import verp_envelope_from

    compiled, frame = _raw_campaign(campaign_id)
    settings.EMAIL_PORT = port
    channel = SmtpChannel("smtp")  # its compose only: the sending is this process's own

    def build(rid: int, email: str, first: str, last: str) -> bytes:
        outgoing = _raw_outgoing(compiled, frame, rid, email, first, last)
        payload = channel.compose(outgoing).payload
        assert isinstance(payload, bytes)
        return payload

    def envelope_from(rid: int) -> str:
        return verp_envelope_from(delivery_id=rid) or frame.envelope_from

    ready = [build(*row) for row in rows] if prebuilt else None
    counts: list[int] = []

    def send_share(share: range) -> None:
        sent = 0
        with SmtpSession() as smtp:
            for index in share:
                row = rows[index]
                data = ready[index] if ready is not None else build(*row)
                result = smtp.send(from_addr=envelope_from(row[0]), to_addr=row[1], data=data)
                sent += result.outcome is Outcome.SENT
        counts.append(sent)

    # Several sessions at once (one thread each) when the sink answers late, as the workers.
    shares = [range(i, len(rows), sessions) for i in range(sessions)]
    threads = [threading.Thread(target=send_share, args=(share,)) for share in shares]
    start.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(sum(counts))


def _raw_esp_worker(
    rows: list[tuple[int, str, str, str]],
    campaign_id: int,
    prebuilt: bool,
    start: Any,
    out: Any,
    port: int,
) -> None:
    """The naive ESP sender: one message per ``POST /email``, one reused requests.Session."""
    import requests
    from django.conf import settings
    from django.core.mail import get_connection

    from campaigns.services.channels.esp import esp_message

    compiled, frame = _raw_campaign(campaign_id)
    backend: Any = get_connection("anymail.backends.postmark.EmailBackend")

    def build(rid: int, email: str, first: str, last: str) -> bytes:
        outgoing = _raw_outgoing(compiled, frame, rid, email, first, last)
        payload = backend.build_message_payload(esp_message(outgoing), backend.send_defaults)
        return json.dumps(payload.data).encode()

    ready = [build(*row) for row in rows] if prebuilt else None
    api = f"http://127.0.0.1:{port}/"
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-Postmark-Server-Token": str(settings.ANYMAIL["POSTMARK_SERVER_TOKEN"]),
    }
    start.wait()
    sent = 0
    with requests.Session() as session:
        for index, row in enumerate(rows):
            data = ready[index] if ready is not None else build(*row)
            response = session.post(f"{api}email", data=data, headers=headers, timeout=30)
            sent += response.status_code == 200 and response.json().get("ErrorCode") == 0
    out.put(sent)


def _server(channel: str, processes: int, latency_ms: float = 0.0) -> Any:
    """The receiving end: the SMTP sink, or the emulated Postmark API on the configured port."""
    from django.conf import settings

    if channel == "postmark":
        from bench.fastesp import FastEsp

        port = int(str(settings.ANYMAIL["POSTMARK_API_URL"]).rstrip("/").rsplit(":", 1)[1])
        return FastEsp(processes=processes, port=port).start()
    from bench.fastsink import FastSink

    return FastSink(processes=processes, latency_ms=latency_ms).start()


def raw_measure(
    campaign: Any,
    n: int,
    *,
    processes: int,
    prebuilt: bool,
    channel: str = "smtp",
    latency_ms: float = 0.0,
    sessions: int = 1,
) -> float:
    from django.conf import settings
    from django.db import connections

    from campaigns.models import Recipient

    rows = list(
        Recipient.objects.filter(email__startswith="bench-")
        .order_by("id")
        .values_list("id", "email", "first_name", "last_name")[:n]
    )
    connections.close_all()
    cpu_before = children_cpu()
    sink = _server(channel, processes, latency_ms)
    settings.EMAIL_PORT = sink.port
    ctx = mp.get_context("fork")
    start, out = ctx.Barrier(processes + 1), ctx.Queue()
    # Each raw process talks to a server process of its own (its own port): on the shared
    # port two of them could land on one server process, and the limit measured would depend
    # on that draw (on two cores: about 4,800 or 8,700 messages a second).
    shares = [(rows[i::processes], sink.ports[i % len(sink.ports)]) for i in range(processes)]
    procs = [
        ctx.Process(target=_raw_esp_worker, args=(share, campaign.pk, prebuilt, start, out, port))
        if channel == "postmark"
        else ctx.Process(
            target=_raw_worker, args=(share, campaign.pk, prebuilt, start, out, port, sessions)
        )
        for share, port in shares
    ]
    for proc in procs:
        proc.start()
    start.wait()
    began = time.perf_counter()
    sent = sum(out.get() for _ in procs)
    elapsed = time.perf_counter() - began
    for proc in procs:
        proc.join()
    sink_cpu = cpu_seconds([p.pid for p in sink.procs if p.pid])
    received = sink.stop()
    if sent != n or len(received) != n:
        log(f"raw: sent {sent}, sink received {len(received)} of {n}")
    cpu = children_cpu() - cpu_before
    label = f"raw{' (prebuilt)' if prebuilt else ''}"
    log(f"{label}: {cpu / n * 1e6:.0f} us CPU per message (sink {sink_cpu / n * 1e6:.0f})")
    return n / elapsed


# --- Full pipeline --------------------------------------------------------------------------


def workers_start(
    env: dict[str, str], *, count: int, sink_port: int, connections: int | None = None
) -> subprocess.Popen[bytes]:
    from django.conf import settings

    from opsdash.workers import celery_worker_argv

    queues = [settings.QUEUE_DELIVERY, settings.QUEUE_PRIORITY, settings.QUEUE_DEFAULT]
    log_path = Path(tempfile.mkstemp(prefix="bench-delivery-worker-", suffix=".log")[1])
    proc = subprocess.Popen(
        celery_worker_argv(
            name=f"bench-delivery-{os.getpid()}@%h",
            queues=queues,
            concurrency=count,
            loglevel=os.environ.get("BENCH_WORKER_LOG_LEVEL", "warning"),
        ),
        cwd=ROOT,
        env={
            **env,
            "EMAIL_PORT": str(sink_port),
            **({"OPSDASH_DELIVERY_CONNECTIONS": str(connections)} if connections else {}),
        },
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log(f"workers: {count} processes, log {log_path}")
    return proc


def workers_settle(pid: int, *, count: int) -> None:
    """Waits until the pool processes exist and the worker has stopped booting (CPU idle)."""
    deadline = time.monotonic() + 120
    last = -1.0
    while time.monotonic() < deadline:
        tree = _tree(pid)
        used = cpu_seconds(tree)
        if len(tree) > count and used - last < 0.05:
            return
        last = used
        time.sleep(1)
    raise SystemExit("the workers did not start")


def queues_purge() -> None:
    from django.conf import settings

    from opsdash.celery import app

    with app.connection_for_write() as conn:
        for queue in (settings.QUEUE_DELIVERY, settings.QUEUE_PRIORITY, settings.QUEUE_DEFAULT):
            try:
                # kombu's stubs type the channel as the abstract StdChannel; the transport's
                # channel (py-amqp, redis) has queue_purge, hence [attr-defined].
                conn.default_channel.queue_purge(queue)  # type: ignore[attr-defined]
            except Exception:
                continue


def launch(campaign: Any) -> tuple[Any, float]:
    from campaigns.models import Send
    from campaigns.publishers import publish_batch
    from campaigns.services.delivery import send_launch

    began = time.perf_counter()
    send = send_launch(
        campaign_id=campaign.pk,
        occurrence_key=f"bench-{time.time_ns()}",
        trigger=Send.Trigger.MANUAL,
        publish=publish_batch,
    )
    return send, time.perf_counter() - began


def rss_mb(pids: list[int]) -> float:
    """Total resident memory of live processes, from /proc."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def pipeline_wait(send_id: int, n: int, *, timeout: float, workers_pid: int) -> float:
    """Waits for the send to complete; returns the workers' peak total RSS (MB)."""
    from campaigns.models import Send

    deadline = time.monotonic() + timeout
    last_log = 0.0
    peak = 0.0
    while True:
        peak = max(peak, rss_mb(_tree(workers_pid)))
        send = Send.objects.get(pk=send_id)
        if send.status != Send.Status.RUNNING:
            return peak
        if time.monotonic() > deadline:
            raise SystemExit(f"the send did not complete in {timeout}s: {send.done_count}/{n}")
        if time.monotonic() - last_log > 10:
            log(f"pipeline: {send.done_count}/{n}")
            last_log = time.monotonic()
        time.sleep(0.5)


def pipeline_measure(
    campaign: Any,
    n: int,
    env: dict[str, str],
    *,
    workers: int,
    sink_processes: int,
    channel: str = "smtp",
    latency_ms: float = 0.0,
    connections: int | None = None,
) -> tuple[float, float, int, int, float]:
    from campaigns.models import Delivery, TaskLink

    sink = _server(channel, sink_processes, latency_ms)
    queues_purge()
    proc = workers_start(env, count=workers, sink_port=sink.port, connections=connections)
    try:
        workers_settle(proc.pid, count=workers)
        sink_pids = [p.pid for p in sink.procs if p.pid]
        per_process = {pid: cpu_seconds([pid]) for pid in _tree(proc.pid)}
        before = {
            "workers": cpu_seconds(_tree(proc.pid)),
            "sink": cpu_seconds(sink_pids),
            "bench": cpu_seconds([os.getpid()]),
        }
        began = time.time()
        send, launch_s = launch(campaign)
        log(f"launch: {send.total} deliveries in {launch_s:.2f}s")
        peak_rss = pipeline_wait(send.pk, n, timeout=max(600.0, n / 50), workers_pid=proc.pid)
        # Until the Send closed (its finished_at, written by the last batch), not until this
        # loop's next look, up to half a second later.
        send.refresh_from_db()
        elapsed = (send.finished_at.timestamp() if send.finished_at else time.time()) - began
        after = {
            "workers": cpu_seconds(_tree(proc.pid)),
            "sink": cpu_seconds(sink_pids),
            "bench": cpu_seconds([os.getpid()]),
            # Backends start with the run (the bench's own and the workers'); all of theirs counts.
            "postgres": cpu_seconds(postgres_backends()),
        }
        parts = {key: (after[key] - before.get(key, 0.0)) / n * 1e6 for key in after}
        detail = ", ".join(f"{key} {value:.0f}" for key, value in parts.items())
        log(f"pipeline: {sum(parts.values()):.0f} us CPU per message ({detail})")
        for pid in _tree(proc.pid):
            used = cpu_seconds([pid]) - per_process.get(pid, 0.0)
            log(f"  worker process {pid}: {used / n * 1e6:.0f} us CPU per message")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(60)
    received = sink.stop()
    log(f"pipeline: messages per sink process {sink.counts}")
    expected = {
        f"<send-{send.pk}.rcpt-{rid}@{_domain()}>"
        for rid in Delivery.objects.filter(send=send).values_list("recipient_id", flat=True)
    }
    counts = Counter(received)
    lost = len(expected - set(counts))
    duplicates = sum(count - 1 for count in counts.values() if count > 1)
    statuses = Counter(Delivery.objects.filter(send=send).values_list("status", flat=True))
    batches = TaskLink.objects.filter(send=send, kind=TaskLink.Kind.BATCH).count()
    log(f"pipeline: rows by status {dict(statuses)}, {batches} batches, {elapsed:.1f}s")
    log(f"pipeline: workers' peak RSS {peak_rss:.0f} MB")
    return n / elapsed, launch_s, lost, duplicates, peak_rss


def _domain() -> str:
    from django.conf import settings

    return str(settings.OPSDASH_MESSAGE_ID_DOMAIN)


def launch_only(campaign: Any) -> float:
    """Times a launch with no worker running, then cancels the send and empties the queue."""
    from campaigns.services.delivery import send_cancel

    queues_purge()
    send, launch_s = launch(campaign)
    log(f"launch: {send.total} deliveries in {launch_s:.2f}s")
    send_cancel(send_id=send.pk, by=None)
    queues_purge()
    return launch_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="print only the JSON line on stdout")
    # One more worker process than cores: a batch also waits on PostgreSQL, Redis and RabbitMQ.
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 2) + 1)
    parser.add_argument("--sink-processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--launch-only", action="store_true")
    parser.add_argument("--raw-msgs-per-s", type=float, help="reuse a raw figure, skip measuring")
    parser.add_argument(
        "--relay-latency-ms",
        type=float,
        default=0.0,
        help="the sink answers each DATA this many ms late (a distant relay)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        help="SMTP sessions per worker process (default: 64 with a latency, else the setting)",
    )
    parser.add_argument(
        "--channel",
        choices=["smtp", "postmark"],
        default="smtp",
        help="the SMTP relay (the default) or an emulated Postmark API",
    )
    args = parser.parse_args()

    esp_port = None
    if args.channel == "postmark":
        from bench.fastesp import free_port

        esp_port = free_port()
    env = environment(tempfile.mkdtemp(prefix="bench-delivery-"), esp_port=esp_port)
    database_ensure(env["DATABASE_URL"])
    django_setup()
    n = args.recipients
    campaign = recipients_seed(n)
    log(f"seeded {n} recipients")
    if args.launch_only:
        print(json.dumps({"recipients": n, "launch_s": round(launch_only(campaign), 2)}))
        return 0

    from django.conf import settings

    cores = os.cpu_count() or 2
    latency = args.relay_latency_ms
    connections = args.connections or (64 if latency else None)
    per_worker = connections or settings.OPSDASH_DELIVERY_CONNECTIONS
    # The raw senders keep as many sessions in all as the workers (without a latency, one per
    # process: more only adds switching where nothing waits).
    sessions = max(1, per_worker * args.workers // cores) if latency else 1
    measure = {"channel": args.channel, "latency_ms": latency, "sessions": sessions}
    raw = args.raw_msgs_per_s
    if not raw:
        prebuilt = raw_measure(campaign, min(n, 50_000), processes=cores, prebuilt=True, **measure)
        log(f"raw_prebuilt_msgs_per_s {prebuilt:.0f} (messages encoded before the clock)")
        before = raw_measure(campaign, n, processes=cores, prebuilt=False, **measure)
        log(f"raw_msgs_per_s before the pipeline {before:.0f}")
    pipeline, launch_s, lost, duplicates, peak_rss = pipeline_measure(
        campaign,
        n,
        env,
        workers=args.workers,
        sink_processes=args.sink_processes,
        channel=args.channel,
        latency_ms=latency,
        connections=connections,
    )
    if not raw:
        # Measured on both sides of the pipeline: the machine is shared, and its load moves.
        after = raw_measure(campaign, n, processes=cores, prebuilt=False, **measure)
        log(f"raw_msgs_per_s after the pipeline {after:.0f}")
        raw = (before + after) / 2
    line = {
        "recipients": n,
        "pipeline_msgs_per_s": round(pipeline, 1),
        "raw_msgs_per_s": round(raw, 1),
        "ratio": round(pipeline / raw, 3),
        "lost": lost,
        "duplicates": duplicates,
        "launch_s": round(launch_s, 2),
        "relay_latency_ms": latency,
        "connections": per_worker,
        "worker_rss_mb": round(peak_rss, 1),
    }
    print(json.dumps(line))
    return 0 if lost == 0 and duplicates == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
