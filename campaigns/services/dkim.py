"""DKIM signing of the SMTP channel's messages (RFC 6376), with the key from the environment.

Every message gets one ``rsa-sha256`` signature with ``relaxed/relaxed`` canonicalisation (it
survives relays that re-fold headers or touch whitespace) over the headers a reader or a mailbox
provider acts on. The key is parsed once per process (per configuration, so tests can change it).

The canonicalisation and the DKIM-Signature header are written here and the RSA signature is
OpenSSL's, through ``cryptography``: dkimpy's ``dkim.sign`` does the RSA arithmetic in pure
Python (about 8 ms per message) and canonicalises a 20 KB body in about 0.6 ms, several times
the cost of building the message. The tests verify every signature with dkimpy's verifier.

RSA only: Ed25519 (RFC 8463) signs faster, but major receivers (Gmail) do not verify it yet, so
it would have to go alongside an RSA signature and would save nothing.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# The headers a receiver must be able to trust, in the order they are listed in h=: who it is
# from and to, what it is, when, the unsubscribe headers Gmail and Yahoo act on (RFC 8058 asks
# for them to be signed) and the MIME structure. Only those present are signed.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
)
# Listed once more than they occur, so that a second one added on the way (a second From shown
# to the reader, a second List-Unsubscribe acted on by the mailbox provider) breaks the
# signature instead of riding on it.
OVERSIGNED_HEADERS = frozenset(
    (
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"reply-to",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
    )
)
MINIMUM_KEY_BITS = 1024  # RFC 8301: verifiers must reject shorter keys (2048 is the norm)

_CRLF = b"\r\n"
_TRAILING_WSP = re.compile(rb"[ \t]+(?=\r\n)")
_WSP_RUN = re.compile(rb"[ \t]+")
_BODY_WSP_RUN = re.compile(rb"[ \t]{2,}|\t")  # a single space is already canonical
_FOLD_AT = 72


@dataclass(frozen=True)
class DkimSigner:
    domain: str
    selector: str
    key: rsa.RSAPrivateKey


def dkim_key_parse(pem: str) -> rsa.RSAPrivateKey:
    """The RSA private key in ``pem``; ImproperlyConfigured naming the setting otherwise."""
    name = "OPSDASH_DKIM_PRIVATE_KEY"
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError as exc:  # the key is encrypted: nobody would be there to type a password
        raise ImproperlyConfigured(f"{name}: the key must not be encrypted ({exc}).") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ImproperlyConfigured(
            f"{name} is not a PEM private key ({exc}). Give the file's path in {name}_FILE."
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        kind = type(key).__name__.removeprefix("_").removesuffix("PrivateKey")
        raise ImproperlyConfigured(f"{name} is not an RSA key ({kind}): DKIM signs with RSA.")
    if key.key_size < MINIMUM_KEY_BITS:
        raise ImproperlyConfigured(
            f"{name} is a {key.key_size}-bit RSA key: receivers ignore DKIM keys under "
            f"{MINIMUM_KEY_BITS} bits (use 2048)."
        )
    return key


_SETTINGS = ("OPSDASH_DKIM_DOMAIN", "OPSDASH_DKIM_SELECTOR", "OPSDASH_DKIM_PRIVATE_KEY")


def dkim_missing() -> list[str]:
    """The DKIM settings not given, when some are: signing needs all three or none."""
    return _missing(*(getattr(settings, name) for name in _SETTINGS))


def _missing(*values: str) -> list[str]:
    missing = [name for name, value in zip(_SETTINGS, values, strict=True) if not value]
    return missing if len(missing) < len(_SETTINGS) else []


def dkim_signer() -> DkimSigner | None:
    """The configured signer, or None when DKIM is off; ImproperlyConfigured when half set.

    The system checks (campaigns.checks) report the same problems at startup.
    """
    return _signer_for(*(getattr(settings, name) for name in _SETTINGS))


@lru_cache(maxsize=4)
def _signer_for(domain: str, selector: str, pem: str) -> DkimSigner | None:
    # Keyed by the values, so the key is parsed once per process and configuration.
    missing = _missing(domain, selector, pem)
    if missing:
        raise ImproperlyConfigured(f"DKIM is partly configured: {', '.join(missing)} not set.")
    if not domain:
        return None
    return DkimSigner(domain=domain.lower(), selector=selector.lower(), key=dkim_key_parse(pem))


def dkim_dns_record(signer: DkimSigner) -> tuple[str, str]:
    """The TXT record to publish for ``signer``: its name and its value."""
    der = signer.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    value = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    return f"{signer.selector}._domainkey.{signer.domain}", value


def dkim_sign(message: bytes) -> bytes:
    """``message`` with a DKIM-Signature header in front; unchanged when DKIM is off.

    ``message`` has CRLF line ends, as the SMTP channel sends it (``mime.wire_message``).
    """
    signer = dkim_signer()
    if signer is None:
        return message
    return _signature(signer, message, int(time.time())) + message


def _signature(signer: DkimSigner, message: bytes, now: int) -> bytes:
    """The DKIM-Signature header line for ``message`` (RFC 6376 section 5).

    1. Split the header from the body; hash the relaxed body (bh=).
    2. Choose the header fields to sign: those of SIGNED_HEADERS present, each as many times
       as it occurs, and the OVERSIGNED ones once more (h=).
    3. Write the DKIM-Signature header with an empty b=, folded as it will be sent.
    4. Sign the relaxed signed fields followed by that header (without its CRLF) with
       RSASSA-PKCS1-v1_5 and SHA-256, and append the signature as b=.
    """
    head, _, body = message.partition(_CRLF + _CRLF)
    fields = _fields(head)
    body_hash = base64.b64encode(hashlib.sha256(_body_relaxed(body)).digest()).decode()
    names, signed = _signed_fields(fields)
    value = _signature_value(signer, names, body_hash, now)
    data = b"".join(signed) + _header_relaxed(b"DKIM-Signature", value).removesuffix(_CRLF)
    raw = signer.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    b64 = base64.b64encode(raw)
    chunks = [b64[i : i + _FOLD_AT] for i in range(0, len(b64), _FOLD_AT)]
    return b"DKIM-Signature: " + value + b"\r\n\t".join(chunks) + _CRLF


def _fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """Header fields as (name, raw value), continuation lines kept with their CRLF."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(_CRLF):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + _CRLF + line)
        else:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields


def _signed_fields(fields: list[tuple[bytes, bytes]]) -> tuple[list[bytes], list[bytes]]:
    """The h= names and the relaxed fields they select (repeated names from the bottom up)."""
    by_name: dict[bytes, list[bytes]] = {}
    for name, value in fields:
        by_name.setdefault(name.strip().lower(), []).append(value)
    names: list[bytes] = []
    signed: list[bytes] = []
    for name in SIGNED_HEADERS:
        values = by_name.get(name, [])
        names += [name] * (len(values) + (name in OVERSIGNED_HEADERS and bool(values)))
        signed += [_header_relaxed(name, value) for value in reversed(values)]
    return names, signed


def _signature_value(signer: DkimSigner, names: list[bytes], body_hash: str, now: int) -> bytes:
    """The DKIM-Signature value up to an empty ``b=``, folded: one group of tags a line."""
    lines = [
        f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={signer.domain}; s={signer.selector};",
        f"t={now};",
        *_fold_list("h=", [name.decode() for name in names]),
        f"bh={body_hash};",
        "b=",
    ]
    return "\r\n\t".join(lines).encode("ascii")


def _fold_list(tag: str, names: list[str]) -> list[str]:
    """``tag`` and the names joined by ":", in lines of at most _FOLD_AT characters."""
    lines = [tag]
    for index, name in enumerate(names):
        item = name + (":" if index < len(names) - 1 else ";")
        if len(lines[-1]) + len(item) > _FOLD_AT:
            lines.append("")
        lines[-1] += item
    return lines


def _header_relaxed(name: bytes, value: bytes) -> bytes:
    """RFC 6376 3.4.2: lowercase name; value unfolded, runs of WSP as one space, trimmed."""
    unfolded = value.replace(_CRLF, b"")
    return name.strip().lower() + b":" + _WSP_RUN.sub(b" ", unfolded).strip(b" \t") + _CRLF


def _body_relaxed(body: bytes) -> bytes:
    """RFC 6376 3.4.4, with cheap tests first: an encoded campaign body rarely needs work."""
    if body and not body.endswith(_CRLF):
        body += _CRLF
    if b" \r\n" in body or b"\t\r\n" in body:
        body = _TRAILING_WSP.sub(b"", body)
    if b"  " in body or b"\t" in body:
        body = _BODY_WSP_RUN.sub(b" ", body)
    end = len(body)
    while body.endswith(_CRLF + _CRLF, 0, end):  # empty lines at the end are ignored
        end -= 2
    if end < len(body):
        body = body[:end]
    return b"" if body == _CRLF else body
