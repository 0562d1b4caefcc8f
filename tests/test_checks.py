"""System checks for sending: each names the variable to set, and production refuses to start."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from django.core.checks import CheckMessage
from django.core.checks import Warning as CheckWarning
from pytest_django import Settings

from campaigns.checks import (
    check_bounce_domain,
    check_channels,
    check_dkim,
    check_esps,
    check_webhooks,
    check_webhooks_deploy,
)
from tests.test_settings import run_manage

PRODUCTION = {
    "OPSDASH_ENV": "production",
    "DJANGO_SECRET_KEY": "x" * 20 + "a-long-random-production-secret-for-the-check-0123456789",
    "DJANGO_ALLOWED_HOSTS": "ops.example.com",
}


def rsa_pem(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def pem() -> str:
    return rsa_pem(2048)


def ids(messages: list[CheckMessage]) -> list[str | None]:
    return [message.id for message in messages]


def text(messages: list[CheckMessage]) -> str:
    return "\n".join(f"{message.msg} {message.hint}" for message in messages)


# --- DKIM ------------------------------------------------------------------------------------


@pytest.fixture
def dkim_on(settings: Settings, pem: str) -> Settings:
    settings.OPSDASH_DKIM_DOMAIN = "example.com"
    settings.OPSDASH_DKIM_SELECTOR = "opsdash2026"
    settings.OPSDASH_DKIM_PRIVATE_KEY = pem
    return settings


def test_dkim_off_or_fully_configured_passes(settings: Settings, dkim_on: Settings) -> None:
    assert check_dkim() == []
    for name in ("OPSDASH_DKIM_DOMAIN", "OPSDASH_DKIM_SELECTOR", "OPSDASH_DKIM_PRIVATE_KEY"):
        setattr(settings, name, "")
    assert check_dkim() == []


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        (["OPSDASH_DKIM_PRIVATE_KEY"], "OPSDASH_DKIM_PRIVATE_KEY not set"),
        (["OPSDASH_DKIM_SELECTOR", "OPSDASH_DKIM_PRIVATE_KEY"], "SELECTOR, OPSDASH_DKIM_PRIVATE"),
        (["OPSDASH_DKIM_DOMAIN"], "OPSDASH_DKIM_DOMAIN not set"),
    ],
)
def test_partly_configured_dkim_is_an_error_naming_what_is_missing(
    dkim_on: Settings, unset: list[str], named: str
) -> None:
    for name in unset:
        setattr(dkim_on, name, "")

    problems = check_dkim()

    assert ids(problems) == ["campaigns.E101"]
    assert named in problems[0].msg


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("OPSDASH_DKIM_DOMAIN", "localhost", "campaigns.E102"),
        ("OPSDASH_DKIM_DOMAIN", "example.com.", "campaigns.E102"),
        ("OPSDASH_DKIM_DOMAIN", "exa mple.com", "campaigns.E102"),
        ("OPSDASH_DKIM_DOMAIN", "-bad.example.com", "campaigns.E102"),
        ("OPSDASH_DKIM_SELECTOR", "s1._domainkey", "campaigns.E103"),
        ("OPSDASH_DKIM_SELECTOR", "s1;d=evil", "campaigns.E103"),
        ("OPSDASH_DKIM_SELECTOR", "x" * 64, "campaigns.E103"),
    ],
)
def test_a_domain_or_selector_dns_would_not_hold_is_an_error(
    dkim_on: Settings, setting: str, value: str, expected: str
) -> None:
    setattr(dkim_on, setting, value)

    problems = check_dkim()

    assert ids(problems) == [expected]
    assert setting in problems[0].msg


def test_a_dotted_selector_and_a_subdomain_are_accepted(dkim_on: Settings) -> None:
    dkim_on.OPSDASH_DKIM_SELECTOR = "2026-11.mail"
    dkim_on.OPSDASH_DKIM_DOMAIN = "news.mail-example.co.uk"

    assert check_dkim() == []


@pytest.mark.parametrize(
    "key",
    [
        "not a key",
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode(),
    ],
)
def test_a_key_that_cannot_sign_is_an_error_naming_the_setting(dkim_on: Settings, key: str) -> None:
    dkim_on.OPSDASH_DKIM_PRIVATE_KEY = key

    problems = check_dkim()

    assert ids(problems) == ["campaigns.E104"]
    assert "OPSDASH_DKIM_PRIVATE_KEY" in problems[0].msg


def test_a_1024_bit_key_signs_but_is_warned_about(dkim_on: Settings) -> None:
    dkim_on.OPSDASH_DKIM_PRIVATE_KEY = rsa_pem(1024)

    problems = check_dkim()

    assert ids(problems) == ["campaigns.W105"]
    assert isinstance(problems[0], CheckWarning)


def test_a_bad_key_file_stops_the_startup_checks_naming_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "dkim.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")

    result = run_manage(
        "check",
        OPSDASH_DKIM_DOMAIN="example.com",
        OPSDASH_DKIM_SELECTOR="opsdash1",
        OPSDASH_DKIM_PRIVATE_KEY_FILE=str(bad),
    )

    assert result.returncode != 0
    assert "campaigns.E104" in result.stderr
    assert "OPSDASH_DKIM_PRIVATE_KEY" in result.stderr


# --- ESP channels and webhooks ---------------------------------------------------------------


@pytest.fixture
def channels(settings: Settings) -> Settings:
    settings.OPSDASH_CHANNELS = ["smtp=smtp"]
    settings.ANYMAIL = {}
    settings.PRODUCTION = False
    return settings


def test_the_smtp_channel_alone_needs_nothing_from_anymail(channels: Settings) -> None:
    assert check_esps() == [] and check_webhooks() == [] and check_webhooks_deploy() == []


@pytest.mark.parametrize(
    ("channel", "variable"),
    [
        ("pm=postmark:broadcast", "ANYMAIL_POSTMARK_SERVER_TOKEN"),
        ("mg=mailgun", "ANYMAIL_MAILGUN_API_KEY"),
        ("sg=sendgrid", "ANYMAIL_SENDGRID_API_KEY"),
        ("br=brevo", "ANYMAIL_BREVO_API_KEY"),
    ],
)
def test_an_esp_channel_without_its_credential_is_an_error_naming_the_variable(
    channels: Settings, channel: str, variable: str
) -> None:
    channels.OPSDASH_CHANNELS = ["smtp=smtp", channel]

    problems = [p for p in check_esps() if p.id == "campaigns.E203"]

    assert len(problems) == 1
    assert variable in problems[0].msg
    channels.ANYMAIL = {variable.removeprefix("ANYMAIL_"): "token"}
    assert "campaigns.E203" not in ids(check_esps())


def test_amazon_ses_needs_boto3_importable(channels: Settings) -> None:
    channels.OPSDASH_CHANNELS = ["ses=amazon_ses"]
    installed = importlib.util.find_spec("boto3") is not None

    problems = check_esps()

    assert ids(problems) == ([] if installed else ["campaigns.E204"])
    assert installed or "django-anymail[amazon-ses]" in text(problems)


def test_mailgun_without_its_webhook_signing_key_is_warned_about(channels: Settings) -> None:
    channels.OPSDASH_CHANNELS = ["mg=mailgun"]
    channels.ANYMAIL = {"MAILGUN_API_KEY": "key"}

    assert ids(check_esps()) == ["campaigns.W205"]
    channels.ANYMAIL = {"MAILGUN_API_KEY": "key", "MAILGUN_WEBHOOK_SIGNING_KEY": "signing"}
    assert check_esps() == []


def test_open_webhooks_are_a_warning_in_development_and_an_error_for_deployment(
    channels: Settings,
) -> None:
    channels.OPSDASH_CHANNELS = ["smtp=smtp", "pm=postmark"]

    warned, refused = check_webhooks(), check_webhooks_deploy()

    assert ids(warned) == ["campaigns.W201"] and ids(refused) == ["campaigns.E201"]
    assert "would accept events from anyone" in warned[0].msg
    assert "postmark" in warned[0].msg


def test_open_webhooks_are_an_error_with_production_settings(channels: Settings) -> None:
    channels.OPSDASH_CHANNELS = ["pm=postmark"]
    channels.PRODUCTION = True

    # Reported once: by the checks every command runs, not again by the deployment ones.
    assert ids(check_webhooks()) == ["campaigns.E201"]
    assert check_webhooks_deploy() == []


def test_webhooks_an_esp_signs_need_no_secret(channels: Settings) -> None:
    channels.OPSDASH_CHANNELS = ["mg=mailgun"]

    assert check_webhooks() == [] and check_webhooks_deploy() == []


@pytest.mark.parametrize("secret", ["nocolon", ":password", "user:", ["user:password", "bad"]])
def test_a_webhook_secret_not_of_the_form_user_password_is_an_error(
    channels: Settings, secret: str | list[str]
) -> None:
    channels.OPSDASH_CHANNELS = ["pm=postmark"]
    channels.ANYMAIL = {"WEBHOOK_SECRET": secret}

    problems = check_webhooks()

    assert ids(problems) == ["campaigns.E202"]
    assert "ANYMAIL_WEBHOOK_SECRET" in problems[0].msg


def test_a_user_password_webhook_secret_passes(channels: Settings) -> None:
    channels.OPSDASH_CHANNELS = ["pm=postmark"]
    channels.ANYMAIL = {"WEBHOOK_SECRET": "opsdash:pa:ss", "POSTMARK_SERVER_TOKEN": "token"}

    assert check_webhooks() == [] and check_webhooks_deploy() == [] and check_esps() == []


def test_production_with_an_esp_and_open_webhooks_refuses_to_start() -> None:
    result = run_manage(
        "check",
        OPSDASH_CHANNELS="pm=postmark",
        ANYMAIL_POSTMARK_SERVER_TOKEN="token",
        **PRODUCTION,
    )

    assert result.returncode != 0
    assert "campaigns.E201" in result.stderr and "ANYMAIL_WEBHOOK_SECRET" in result.stderr


def test_production_with_an_esp_fully_configured_passes_the_deployment_checks(
    tmp_path: Path, pem: str
) -> None:
    key = tmp_path / "dkim.pem"
    key.write_text(pem)

    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        OPSDASH_CHANNELS="smtp=smtp,pm=postmark:broadcast",
        ANYMAIL_POSTMARK_SERVER_TOKEN="token",
        ANYMAIL_WEBHOOK_SECRET="opsdash:a-long-random-webhook-password",
        OPSDASH_DKIM_DOMAIN="example.com",
        OPSDASH_DKIM_SELECTOR="opsdash1",
        OPSDASH_DKIM_PRIVATE_KEY_FILE=str(key),
        OPSDASH_BOUNCE_DOMAIN="bounces.example.com",
        **PRODUCTION,
    )

    assert result.returncode == 0, result.stdout + result.stderr


# --- Bounce domain ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("", []),
        ("bounces.example.com", []),
        ("bounces", ["campaigns.E301"]),
        ("bounces@example.com", ["campaigns.E301"]),
        ("bounces.example.com:25", ["campaigns.E301"]),
    ],
)
def test_the_bounce_domain_must_be_a_domain(
    settings: Settings, domain: str, expected: list[str]
) -> None:
    settings.OPSDASH_BOUNCE_DOMAIN = domain

    assert ids(check_bounce_domain()) == expected


@pytest.mark.parametrize(
    ("entries", "default", "named"),
    [
        (["mail=carrier-pigeon"], "mail", "carrier-pigeon"),
        (["a=smtp", "a=postmark"], "a", "twice"),
        (["smtp=smtp"], "marketing", "OPSDASH_DEFAULT_CHANNEL"),
    ],
)
def test_a_channel_configuration_that_cannot_work_is_an_error_before_any_launch(
    channels: Settings, entries: list[str], default: str, named: str
) -> None:
    channels.OPSDASH_CHANNELS = entries
    channels.OPSDASH_DEFAULT_CHANNEL = default

    problems = check_channels()

    assert ids(problems) == ["campaigns.E200"]
    assert named in problems[0].msg
    channels.OPSDASH_CHANNELS, channels.OPSDASH_DEFAULT_CHANNEL = ["smtp=smtp"], "smtp"
    assert check_channels() == []
