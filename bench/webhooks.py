"""Webhook benchmark: ESP events posted to a real gunicorn, stored, then applied by a worker.

    .venv/bin/python bench/webhooks.py --events 100000

On the services profile (its own database, created if missing, and its own queue and Redis
prefixes):

1. Seeds one recipient per event (kept between runs) and, per run, a fresh Send with one
   Delivery per recipient carrying an ESP message id; the previous run's events and
   suppressions are cleared and the recipients made active again.
2. Starts gunicorn serving opsdash.wsgi on loopback and one Celery worker on the default
   queue (the applier).
3. Posts ``--events`` Postmark webhooks (80% Delivery, 15% HardBounce, 5% SpamComplaint), one
   event per request as Postmark sends them, from ``--clients`` processes each with one
   keep-alive connection.
4. ``accepted_per_s``: 200 answers per second, first request to last answer. ``lost``: events
   answered 200 but not stored. ``applied_lag_s``: from the last 200 until every counter and
   suppression the events call for is applied.

gunicorn: gthread workers, because they keep connections alive (a sync worker closes each
one) and ESPs post with keep-alive; one process per core with 4 threads (``--workers``,
``--threads``), as a web host of its own would run too.
Where the time goes, per request: about 1 ms of Python in gunicorn (Django's handler and
middleware, anymail's parsing, the INSERT's parameters) and one INSERT round trip. The apply
ask costs a Redis round trip only a few times a second per process (services/events/store.py),
and the posting clients write prepared requests on raw keep-alive sockets, so that they take
little of the two cores they share with the server they measure. On this 2-core machine,
100,000 events: about 1,080 accepted per second, applied within a second of the last.

Prints one JSON line: {"events", "accepted_per_s", "lost", "applied_lag_s"}
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/opsdash_bench_webhooks"
PREFIX = "bench-hook-"
SECRET = "bench:webhook-secret"
HOST = "127.0.0.1"
PORT = int(os.environ.get("BENCH_WEBHOOKS_PORT", "18200"))
PATH = "/anymail/postmark/tracking/"
EMAIL_DOMAIN = "hooks.bench.example"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def environment(var_dir: str) -> dict[str, str]:
    env = {
        "OPSDASH_PROFILE": "services",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB),
        "OPSDASH_QUEUE_PREFIX": PREFIX,
        "OPSDASH_REDIS_PREFIX": "bench-hook",
        "OPSDASH_VAR_DIR": var_dir,
        "OPSDASH_LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "false",  # DEBUG keeps every query in memory
        "ANYMAIL_WEBHOOK_SECRET": SECRET,
    }
    os.environ.update(env)
    return {**os.environ, **env}


# --- Data -----------------------------------------------------------------------------------


def recipients_seed(n: int) -> list[tuple[int, str]]:
    """The first ``n`` bench recipients, (id, email), created when missing, all active."""
    from campaigns.models import Recipient

    emails = [f"r{i:07d}@{EMAIL_DOMAIN}" for i in range(n)]
    Recipient.objects.bulk_create(
        [Recipient(email=email) for email in emails], ignore_conflicts=True, batch_size=5000
    )
    Recipient.objects.filter(email__endswith=f"@{EMAIL_DOMAIN}").update(
        status=Recipient.Status.ACTIVE
    )
    found = dict(Recipient.objects.filter(email__in=emails).values_list("email", "id"))
    return [(found[email], email) for email in emails]


def run_prepare(recipients: list[tuple[int, str]]) -> tuple[int, str]:
    """Clears the last run's events and suppressions; a fresh send with one delivery per
    recipient, ESP ids ``<run>-<index>``. Returns (send id, run tag)."""
    from django.db import connection

    from campaigns.models import Campaign, Delivery, DeliveryEvent, Send, Suppression

    with connection.cursor() as cursor:
        tables = f"{DeliveryEvent._meta.db_table}, {Suppression._meta.db_table}"
        cursor.execute(f"TRUNCATE {tables}")
    campaign, _ = Campaign.objects.get_or_create(
        name="Webhook benchmark", defaults={"subject": "Bench", "from_email": "b@example.com"}
    )
    run = uuid.uuid4().hex[:8]
    send = Send.objects.create(campaign=campaign, occurrence_key=f"bench-{run}")
    Delivery.objects.bulk_create(
        [
            Delivery(
                send=send,
                recipient_id=rid,
                status=Delivery.Status.SENT,
                esp_message_id=f"{run}-{i}",
            )
            for i, (rid, _email) in enumerate(recipients)
        ],
        batch_size=5000,
    )
    return send.pk, run


def kind_of(index: int) -> str:
    """80% delivered, 15% hard bounces, 5% complaints, spread evenly."""
    slot = index % 20
    return "bounce" if slot < 3 else "complaint" if slot < 4 else "delivery"


def postmark_body(index: int, email: str, run: str) -> bytes:
    message_id = f"{run}-{index}"
    kind = kind_of(index)
    if kind == "delivery":
        body: dict[str, Any] = {
            "RecordType": "Delivery",
            "MessageID": message_id,
            "Recipient": email,
            "DeliveredAt": "2026-11-05T16:33:54.9070259Z",
            "Details": "smtp;250 2.0.0 OK",
            "Tag": "bench",
            "ServerID": 23,
            "Metadata": {},
            "MessageStream": "outbound",
        }
    else:
        bounce = kind == "bounce"
        body = {
            "RecordType": "Bounce" if bounce else "SpamComplaint",
            "MessageStream": "outbound",
            "ID": 10_000_000 + index,
            "Type": "HardBounce" if bounce else "SpamComplaint",
            "TypeCode": 1 if bounce else 512,
            "Name": "Hard bounce" if bounce else "Spam complaint",
            "Tag": "bench",
            "MessageID": message_id,
            "Metadata": {},
            "ServerID": 23,
            "Description": "The server was unable to deliver your message",
            "Details": "smtp;550 5.1.1 user unknown" if bounce else "",
            "Email": email,
            "From": "sender@example.com",
            "BouncedAt": "2026-11-05T16:33:54.9070259Z",
            "DumpAvailable": False,
            "Inactive": True,
            "CanActivate": bounce,
            "Subject": "Bench",
        }
    return json.dumps(body).encode()


# --- Processes ------------------------------------------------------------------------------


def gunicorn_start(env: dict[str, str], *, workers: int, threads: int) -> subprocess.Popen[bytes]:
    try:
        http.client.HTTPConnection(HOST, PORT, timeout=1).connect()
    except OSError:
        pass
    else:  # a server left over from another run would answer in place of this code
        raise SystemExit(f"port {PORT} is taken: set BENCH_WEBHOOKS_PORT")
    log_path = Path(tempfile.mkstemp(prefix="bench-webhooks-gunicorn-", suffix=".log")[1])
    argv = [sys.executable, "-m", "gunicorn", "opsdash.wsgi:application"]
    argv += ["--bind", f"{HOST}:{PORT}", "--workers", str(workers), "--threads", str(threads)]
    argv += ["--worker-class", "gthread", "--keep-alive", "30", "--log-level", "warning"]
    argv += ["--backlog", "2048"]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log(f"gunicorn: {workers} workers x {threads} threads on {HOST}:{PORT}, log {log_path}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(HOST, PORT, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not start: {log_path.read_text()[-2000:]}")


def worker_start(env: dict[str, str], *, concurrency: int) -> subprocess.Popen[bytes]:
    from django.conf import settings

    from opsdash.workers import celery_worker_argv

    log_path = Path(tempfile.mkstemp(prefix="bench-webhooks-worker-", suffix=".log")[1])
    proc = subprocess.Popen(
        celery_worker_argv(
            name=f"bench-webhooks-{os.getpid()}@%h",
            queues=[settings.QUEUE_DEFAULT],
            concurrency=concurrency,
            loglevel="warning",
        ),
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log(f"applier: 1 celery worker, concurrency {concurrency}, log {log_path}")
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


def queues_purge() -> None:
    from django.conf import settings

    from opsdash.celery import app

    with app.connection_for_write() as conn:
        for name in settings.QUEUES:
            try:
                # kombu's stubs type the channel as the abstract StdChannel (see bench/delivery.py)
                conn.default_channel.queue_purge(name)  # type: ignore[attr-defined]
            except Exception:
                continue


# --- Clients --------------------------------------------------------------------------------


class _Connection:
    """One keep-alive HTTP/1.1 connection that writes prepared requests and reads just the
    status line and the body length of each answer.

    The posting clients share the machine with the server they measure, so they must cost
    as little as possible: http.client parses every answer's headers with the email package,
    which made the eight clients take as much CPU as the web server itself.
    """

    def __init__(self) -> None:
        self.sock = socket.create_connection((HOST, PORT), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def post(self, request: bytes) -> int:
        """Sends one request; returns the answer's status. Raises OSError when the server
        closed the connection."""
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self._recv()
        self.buffer = rest[length:]
        return status

    def _read(self) -> None:
        self.buffer += self._recv()

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


def _request(body: bytes, auth: str) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nContent-Type: application/json\r\n"
        f"Authorization: {auth}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _client(share: list[tuple[int, str]], run: str, start: Any, out: Any, auth: str) -> None:
    """Posts its share over one keep-alive connection, as an ESP does: an event that is not
    answered 200 is posted again (a few times); reports (accepted, last answer time)."""
    requests = [_request(postmark_body(index, email, run), auth) for index, email in share]
    conn = _Connection()
    accepted, last = 0, 0.0
    start.wait()
    for request in requests:
        for _attempt in range(5):
            try:
                status = conn.post(request)
            except OSError:
                conn.close()
                conn = _Connection()
                continue
            if status == 200:
                accepted += 1
                last = time.time()
                break
    conn.close()
    out.put((accepted, last))


def post_all(
    recipients: list[tuple[int, str]], run: str, *, clients: int
) -> tuple[int, float, float]:
    """(accepted, first request time, last 200 time), all clients together."""
    auth = "Basic " + base64.b64encode(SECRET.encode()).decode()
    indexed = [(i, email) for i, (_rid, email) in enumerate(recipients)]
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_client, args=(indexed[k::clients], run, start, out, auth))
        for k in range(clients)
    ]
    for proc in procs:
        proc.start()
    time.sleep(2)  # let each client build its bodies before the clock starts
    began = time.time()
    start.set()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    return sum(r[0] for r in results), began, max(r[1] for r in results)


# --- Measures -------------------------------------------------------------------------------


def expected(n: int) -> dict[str, int]:
    kinds = [kind_of(i) for i in range(n)]
    return {k: kinds.count(k) for k in ("delivery", "bounce", "complaint")}


def applied_wait(send_id: int, n: int, *, timeout: float) -> float:
    """Waits until the send's counters and the suppression list show every event; returns
    the time it happened."""
    from campaigns.models import DeliveryEvent, Send, Suppression

    want = expected(n)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        send = Send.objects.get(pk=send_id)
        counted = (send.delivered_count, send.bounced_count, send.complained_count)
        if (
            counted == (want["delivery"], want["bounce"], want["complaint"])
            and Suppression.objects.count() == want["bounce"] + want["complaint"]
            and not DeliveryEvent.objects.filter(applied_at=None).exists()
        ):
            return time.time()
        time.sleep(0.1)
    raise SystemExit(f"not applied within {timeout}s: counters {counted}, wanted {want}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8, help="posting processes")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads each")
    parser.add_argument("--appliers", type=int, default=1, help="celery worker processes")
    args = parser.parse_args()

    from bench.delivery import database_ensure, django_setup  # the benchmarks' shared set-up

    env = environment(tempfile.mkdtemp(prefix="bench-webhooks-"))
    database_ensure(env["DATABASE_URL"])
    django_setup()
    n = args.events
    recipients = recipients_seed(n)
    send_id, run = run_prepare(recipients)
    log(f"{n} deliveries ready (send {send_id}, run {run})")
    from django.db import connection

    connection.close()  # the client processes are forked: they must not share it
    queues_purge()
    web = gunicorn_start(env, workers=args.workers, threads=args.threads)
    applier = worker_start(env, concurrency=args.appliers)
    try:
        accepted, began, last = post_all(recipients, run, clients=args.clients)
        log(f"{accepted} accepted in {last - began:.1f}s")
        done = applied_wait(send_id, n, timeout=120)
    finally:
        stop(web)
        stop(applier)
    from campaigns.models import DeliveryEvent

    # Every event is posted until it is answered 200, as ESPs retry: lost is what the bench
    # posted and never found stored, whether or not its answer came back.
    stored = DeliveryEvent.objects.count()
    line = {
        "events": n,
        "accepted_per_s": round(accepted / (last - began), 1),
        "lost": n - stored,
        "applied_lag_s": round(done - last, 2),
    }
    print(json.dumps(line))
    return 0 if line["lost"] == 0 and accepted == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
