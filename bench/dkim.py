"""DKIM benchmark: what signing adds to building a campaign message for the SMTP channel.

    .venv/bin/python bench/dkim.py --messages 2000

No database and no network: a campaign of about 20 KB (a newsletter's HTML and text parts) is
compiled once, then each message is rendered for its recipient and encoded the way the delivery
loop does it (``message_render`` + ``mime.wire_message``), once without and once with
``dkim_sign``. The key is a 2048-bit RSA key generated for the run and read the way production
reads it, from ``OPSDASH_DKIM_PRIVATE_KEY_FILE``.

The machine is shared, so the figures are CPU time of this process (waiting for a core is left
out), unsigned and signed rounds alternate, and each figure is the median round. ``--dkimpy``
also times dkimpy's own ``dkim.sign`` on the same message, on stderr: the pure-Python signer
this replaces.

Prints one JSON line:
    {"messages", "message_bytes", "unsigned_us_per_msg", "signed_us_per_msg", "dkim_us_per_msg"}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file is named like dkimpy's module: without bench/ on the path, "import dkim" is dkimpy.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

PARAGRAPH = (
    '<tr><td style="padding: 12px 24px; font-family: Helvetica, Arial, sans-serif; '
    'font-size: 15px; line-height: 22px; color: #333333;">'
    "<h2>What changed in {{ recipient.attributes.city }}</h2>"
    "<p>Hi {{ recipient.first_name }}, here is what changed this month: new reports, faster "
    "exports and a calmer inbox. "
    '<a href="https://www.example.com/news/2026-11?utm_source=opsdash&utm_medium=email">'
    "Read the whole story</a>.</p></td></tr>\n"
)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def key_file(directory: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = Path(directory) / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def django_setup(directory: str) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "opsdash.settings",
            "OPSDASH_VAR_DIR": directory,
            "OPSDASH_LOG_LEVEL": "WARNING",
            "OPSDASH_DKIM_DOMAIN": "example.com",
            "OPSDASH_DKIM_SELECTOR": "bench",
            "OPSDASH_DKIM_PRIVATE_KEY_FILE": key_file(directory),
        }
    )
    import django

    django.setup()


def builder(n: int) -> Callable[[int], bytes]:
    """A function building message ``i`` of the campaign, as the delivery loop does."""
    from campaigns.services.audiences import unsubscribe_url
    from campaigns.services.mime import wire_frame, wire_message
    from campaigns.services.rendering import campaign_compile, message_render

    compiled = campaign_compile(
        campaign_id=1,
        name="DKIM benchmark",
        subject="Hello {{ recipient.first_name }}, what's new this month",
        from_email="Team <team@example.com>",
        reply_to="replies@example.com",
        text_body=(
            "Hi {{ recipient.first_name }} from {{ recipient.attributes.city }},\n\n"
            + "Here is what changed this month: new reports, faster exports. " * 80
            + "\n\nUnsubscribe: {{ unsubscribe_url }}\n"
        ),
        html_body=(
            "<html><body><table>"
            + PARAGRAPH * 40
            + '<tr><td><a href="{{ unsubscribe_url }}">Unsubscribe</a></td></tr>'
            + "</table></body></html>"
        ),
    )
    frame = wire_frame(compiled)
    urls = [unsubscribe_url(recipient_id=i, send_id=1) for i in range(n)]

    def build(i: int) -> bytes:
        email = f"bench-{i}@example.com"
        recipient: dict[str, object] = {"email": email, "first_name": f"First{i}"}
        recipient |= {"last_name": "Tester", "attributes": {"city": "Oslo"}}
        rendered = message_render(compiled, recipient=recipient, unsubscribe_url=urls[i])
        return wire_message(
            frame,
            rendered,
            to_email=email,
            to_name=f"First{i} Tester",
            message_id=f"<bench.rcpt-{i}@example.com>",
            unsubscribe_url=urls[i],
        )

    return build


def round_us(n: int, build: Callable[[int], bytes], sign: Callable[[bytes], bytes]) -> float:
    started = time.process_time()
    for i in range(n):
        sign(build(i))
    return (time.process_time() - started) / n * 1e6


def dkimpy_us(message: bytes, n: int) -> float:
    import dkim

    pem = Path(os.environ["OPSDASH_DKIM_PRIVATE_KEY_FILE"]).read_bytes()
    started = time.process_time()
    for _ in range(n):
        dkim.sign(message, b"bench", b"example.com", pem, canonicalize=(b"relaxed", b"relaxed"))
    return (time.process_time() - started) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dkimpy", action="store_true", help="also time dkimpy's dkim.sign")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="opsdash-bench-dkim-") as directory:
        django_setup(directory)
        from campaigns.services.dkim import dkim_sign, dkim_signer

        assert dkim_signer() is not None, "DKIM is not configured"
        build = builder(args.messages)
        size = len(build(0))
        unsigned, signed = [], []
        for _ in range(args.rounds):
            unsigned.append(round_us(args.messages, build, lambda message: message))
            signed.append(round_us(args.messages, build, dkim_sign))
        if args.dkimpy:
            log(f"dkimpy dkim.sign: {dkimpy_us(build(0), 50):.0f} us/msg")
    a, b = statistics.median(unsigned), statistics.median(signed)
    result = {
        "messages": args.messages,
        "message_bytes": size,
        "unsigned_us_per_msg": round(a, 1),
        "signed_us_per_msg": round(b, 1),
        "dkim_us_per_msg": round(b - a, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
