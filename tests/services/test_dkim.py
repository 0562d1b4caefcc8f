"""DKIM signatures on campaign messages, verified by dkimpy against a TXT record held here."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.exceptions import ImproperlyConfigured
from pytest_django import Settings

from campaigns.services.dkim import dkim_dns_record, dkim_key_parse, dkim_sign, dkim_signer
from campaigns.services.mime import wire_frame, wire_message
from campaigns.services.rendering import campaign_compile, message_render

DOMAIN = "example.com"
SELECTOR = "opsdash1"
URL = "https://ops.example.com/u/abc:def/"
PARAGRAPH = (
    "<p>Hi {{ recipient.first_name }}, here is what changed this month, with a "
    '<a href="https://example.com/news?utm_source=opsdash">link</a> to read more.</p>\n'
)
ACTED_ON = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
}


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    # Generated for the run: no private key is ever committed.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def signing(settings: Settings, key: rsa.RSAPrivateKey) -> None:
    settings.OPSDASH_DKIM_DOMAIN = DOMAIN
    settings.OPSDASH_DKIM_SELECTOR = SELECTOR
    settings.OPSDASH_DKIM_PRIVATE_KEY = pem(key)


def dns(key: rsa.RSAPrivateKey) -> Callable[..., bytes]:
    """A resolver that knows one record: the key's, at <selector>._domainkey.<domain>."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)

    def txt(name: bytes, timeout: int = 5) -> bytes:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else b""

    return txt


def verifies(message: bytes, key: rsa.RSAPrivateKey) -> bool:
    return bool(dkim.verify(message, dnsfunc=dns(key)))


def campaign_message(
    *, subject: str = "News for {{ recipient.first_name }}", reply: bool = True
) -> bytes:
    """A campaign message as the SMTP channel sends it, about 20 KB."""
    compiled = campaign_compile(
        campaign_id=7,
        name="News",
        subject=subject,
        from_email="Team <team@example.com>",
        reply_to="replies@example.com" if reply else "",
        text_body="Hi {{ recipient.first_name }},\n\n" + "Here is what changed this month. " * 150,
        html_body=PARAGRAPH * 100,
    )
    recipient = {
        "email": "ada@example.org",
        "first_name": "Ada",
        "last_name": "L",
        "attributes": {},
    }
    rendered = message_render(compiled, recipient=recipient, unsubscribe_url=URL)
    return wire_message(
        wire_frame(compiled),
        rendered,
        to_email="ada@example.org",
        to_name="Ada L",
        message_id="<send-1.rcpt-2@opsdash.localhost>",
        unsubscribe_url=URL,
    )


def signature_tags(message: bytes) -> dict[bytes, bytes]:
    match = re.match(rb"DKIM-Signature:(.*?\r\n)(?![ \t])", message, re.DOTALL)
    assert match is not None
    unfolded = re.sub(rb"\r\n[ \t]", b" ", match.group(1))
    tags: dict[bytes, bytes] = dkim.util.parse_tag_value(unfolded.strip())
    return tags


def signed_names(message: bytes) -> list[str]:
    return [name.strip().decode() for name in signature_tags(message)[b"h"].split(b":")]


@pytest.mark.usefixtures("signing")
def test_a_campaign_message_is_signed_and_verifies(key: rsa.RSAPrivateKey) -> None:
    message = campaign_message()

    signed = dkim_sign(message)

    assert 10_000 < len(message) < 30_000
    assert signed.endswith(message)
    assert verifies(signed, key)
    tags = signature_tags(signed)
    assert (tags[b"d"], tags[b"s"]) == (DOMAIN.encode(), SELECTOR.encode())
    assert (tags[b"a"], tags[b"c"]) == (b"rsa-sha256", b"relaxed/relaxed")


@pytest.mark.usefixtures("signing")
def test_it_signs_the_headers_a_receiver_acts_on_and_over_signs_from() -> None:
    names = signed_names(dkim_sign(campaign_message()))

    assert set(names) >= ACTED_ON
    # From listed twice for the one present: a second From added on the way breaks it.
    assert names.count("from") == 2
    assert "x-opsdash-campaign" not in names


@pytest.mark.usefixtures("signing")
def test_headers_the_message_does_not_have_are_not_signed(key: rsa.RSAPrivateKey) -> None:
    signed = dkim_sign(campaign_message(reply=False))

    assert "reply-to" not in signed_names(signed)
    assert verifies(signed, key)


@pytest.mark.usefixtures("signing")
@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Subject: News for Ada", b"Subject: News for Eve"),
        (b"Here is what changed", b"Here is what chan=67ed"),  # same text once decoded
        (b"https://ops.example.com/u/abc:def/", b"https://evil.example.net/u/abc:def/"),
    ],
)
def test_a_changed_header_or_body_fails_verification(
    key: rsa.RSAPrivateKey, old: bytes, new: bytes
) -> None:
    signed = dkim_sign(campaign_message())
    assert old in signed

    assert not verifies(signed.replace(old, new, 1), key)


@pytest.mark.usefixtures("signing")
@pytest.mark.parametrize(
    "added",
    [
        b"Subject: Your account is locked",
        b"List-Unsubscribe: <https://evil.example.net/u/>",
        b"Reply-To: security@bank.example",
    ],
)
def test_a_second_header_added_on_the_way_fails_verification(
    key: rsa.RSAPrivateKey, added: bytes
) -> None:
    signed = dkim_sign(campaign_message())

    # At the top, where relays add headers: a verifier takes a signed name's last instance
    # first, so without over-signing the added one would be left out and the signature would
    # hold. (dkimpy's verifier always counts extra From headers, so From is not shown here.)
    forged = added + b"\r\n" + signed

    assert verifies(signed, key)
    assert not verifies(forged, key)


@pytest.mark.usefixtures("signing")
def test_refolded_headers_and_trailing_whitespace_still_verify(key: rsa.RSAPrivateKey) -> None:
    signed = dkim_sign(campaign_message())

    head, _, body = signed.partition(b"\r\n\r\n")

    head = head.replace(b"Subject: News for Ada", b"Subject:  News\r\n\tfor   Ada ", 1)
    body = body.replace(b"Here is", b"Here  \tis", 3).replace(b"\r\n", b" \t\r\n", 40)
    relayed = head + b"\r\n\r\n" + body + b"\r\n\r\n"

    assert relayed != signed
    assert verifies(relayed, key)


@pytest.mark.usefixtures("signing")
def test_a_non_ascii_subject_encoded_in_folded_words_verifies(key: rsa.RSAPrivateKey) -> None:
    signed = dkim_sign(campaign_message(subject="Grüße, {{ recipient.first_name }}! " * 4))

    assert b"=?utf-8?" in signed
    assert verifies(signed, key)


@pytest.mark.usefixtures("signing")
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\r\n",
        b"one line without an end",
        b"tabs\tand  runs   of\t \tspace \t\r\n\r\n\r\n",
        b"  leading space kept as one\r\n\t\r\nlast\r\n",
    ],
)
def test_bodies_with_awkward_whitespace_verify(key: rsa.RSAPrivateKey, body: bytes) -> None:
    message = (
        b"From: team@example.com\r\nTo: ada@example.org\r\nSubject: Hi\r\n"
        b"Date: Wed, 25 Nov 2026 21:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\n" + body
    )

    assert verifies(dkim_sign(message), key)


def test_it_leaves_the_message_unchanged_when_dkim_is_off(settings: Settings) -> None:
    settings.OPSDASH_DKIM_DOMAIN = ""
    settings.OPSDASH_DKIM_SELECTOR = ""
    settings.OPSDASH_DKIM_PRIVATE_KEY = ""
    message = campaign_message()

    assert dkim_signer() is None
    assert dkim_sign(message) == message


@pytest.mark.usefixtures("signing")
def test_the_key_is_parsed_once_per_configuration(settings: Settings) -> None:
    first = dkim_signer()

    assert dkim_signer() is first
    settings.OPSDASH_DKIM_SELECTOR = "opsdash2"
    second = dkim_signer()
    assert second is not None and second is not first and second.selector == "opsdash2"


@pytest.mark.usefixtures("signing")
def test_the_dns_record_to_publish_is_the_one_receivers_check(key: rsa.RSAPrivateKey) -> None:
    signer = dkim_signer()
    assert signer is not None

    name, value = dkim_dns_record(signer)

    assert name == f"{SELECTOR}._domainkey.{DOMAIN}"
    assert value.encode() == dns(key)(f"{name}.".encode())


def test_a_half_configuration_refuses_to_sign_naming_what_is_missing(settings: Settings) -> None:
    settings.OPSDASH_DKIM_DOMAIN = DOMAIN
    settings.OPSDASH_DKIM_SELECTOR = ""
    settings.OPSDASH_DKIM_PRIVATE_KEY = ""

    with pytest.raises(
        ImproperlyConfigured, match="OPSDASH_DKIM_SELECTOR, OPSDASH_DKIM_PRIVATE_KEY"
    ):
        dkim_sign(b"From: a@example.com\r\n\r\nx\r\n")


def short_rsa_key() -> str:
    """A 511-bit RSA key, which cryptography will not generate: from two known primes."""
    p, q, e = 2**255 - 19, 2**256 - 189, 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(e, p * q)
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), rsa.rsa_crt_iqmp(p, q), public
    )
    return pem(numbers.private_key())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not a key", "is not a PEM private key"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a PEM private key"),
        (pem(ec.generate_private_key(ec.SECP256R1())), "is not an RSA key"),
        (short_rsa_key(), "is a 511-bit RSA key"),
        (
            rsa.generate_private_key(public_exponent=65537, key_size=1024)
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
            .decode(),
            "must not be encrypted",
        ),
    ],
)
def test_a_bad_key_is_refused_naming_the_setting(text: str, problem: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="OPSDASH_DKIM_PRIVATE_KEY") as raised:
        dkim_key_parse(text)

    assert problem in str(raised.value)
