"""compose.yaml cannot be run here (no container engine), so its wiring is checked instead."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("migrate", "web", "worker", "beat", "flower", "bounces")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def settings_env_names() -> set[str]:
    """Every environment variable the settings read (through opsdash.env helpers)."""
    source = (ROOT / "opsdash" / "settings.py").read_text()
    return set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))


def test_the_stack_has_every_part(compose: dict[str, Any]) -> None:
    expected = {"postgres", "rabbitmq", "redis", "mailpit", *APP_SERVICES}
    assert expected <= set(compose["services"])


def test_infrastructure_has_healthchecks_and_apps_wait_for_them(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "rabbitmq", "redis", "mailpit", "web", "worker", "bounces"):
        assert "healthcheck" in services[name], name
    for name in APP_SERVICES:
        deps = services[name]["depends_on"]
        for infra in ("postgres", "rabbitmq", "redis"):
            assert deps[infra]["condition"] == "service_healthy", (name, infra)
    for name in ("web", "worker", "beat", "bounces"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_app_environment_names_are_ones_the_settings_read(compose: dict[str, Any]) -> None:
    known = settings_env_names()
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        # Flower reads its own FLOWER_* options from the environment.
        unknown = {
            key for key in set(env) - known if not (name == "flower" and key.startswith("FLOWER_"))
        }
        assert not unknown, f"{name} sets variables the settings never read: {unknown}"
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "EMAIL_HOST"} <= set(
        compose["services"]["web"]["environment"]
    )


def _command(compose: dict[str, Any], name: str) -> list[str]:
    command = compose["services"][name]["command"]
    return command if isinstance(command, list) else command.split()


def test_commands_point_at_code_that_exists(compose: dict[str, Any]) -> None:
    web = _command(compose, "web")
    module, _, attribute = web[1].partition(":")
    assert hasattr(importlib.import_module(module), attribute)
    for name in ("worker", "beat", "flower"):
        command = _command(compose, name)
        assert command[:3] == ["celery", "-A", "opsdash"]
        assert hasattr(importlib.import_module(command[2]), "celery_app")
    beat = _command(compose, "beat")
    scheduler = beat[beat.index("-S") + 1]
    module, _, attribute = scheduler.partition(":")
    assert hasattr(importlib.import_module(module), attribute)
    for step in re.findall(r"manage\.py (\w+)", " ".join(_command(compose, "migrate"))):
        assert step in get_commands(), step
    bounces = _command(compose, "bounces")
    assert bounces[:3] == ["python", "manage.py", "bounces"] and "bounces" in get_commands()


def test_the_bounce_receiver_listens_where_the_apps_and_the_mta_reach_it(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    bounces = _command(compose, "bounces")
    port = bounces[bounces.index("--port") + 1]
    assert bounces[bounces.index("--host") + 1] == "0.0.0.0"  # inside its container
    assert services["bounces"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert port in str(services["bounces"]["healthcheck"]["test"])
    # Web ("Play a bounce") reaches it by service name; the worker signs VERP addresses for the
    # same domain the receiver accepts.
    for name in ("web", "worker", "bounces"):
        env = services[name]["environment"]
        assert (env["OPSDASH_BOUNCE_HOST"], env["OPSDASH_BOUNCE_PORT"]) == ("bounces", port)
        assert env["OPSDASH_BOUNCE_DOMAIN"] == "${OPSDASH_BOUNCE_DOMAIN:-}"
    # Without a domain it cannot start, so it runs only when asked for (--profile bounces).
    assert services["bounces"]["profiles"] == ["bounces"]


def test_the_worker_consumes_every_queue_the_settings_route_to(compose: dict[str, Any]) -> None:
    from django.conf import settings

    worker = _command(compose, "worker")
    queues = set(worker[worker.index("-Q") + 1].split(","))
    prefix = settings.QUEUE_PREFIX
    routed = {route["queue"].removeprefix(prefix) for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed | {"default"} <= queues


# --- What compose exposes, and with which credentials -----------------------------------------

SECRET_NAME = re.compile(r"PASSWORD|SECRET|AUTH|_KEY$")


def published(compose: dict[str, Any]) -> list[tuple[str, str]]:
    """(service, host address) of every published port, short or long syntax."""
    found = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                found.append((name, str(port.get("host_ip", ""))))
            else:
                parts = str(port).split(":")
                found.append((name, parts[0] if len(parts) == 3 else ""))
    return found


def test_every_published_port_is_bound_to_localhost(compose: dict[str, Any]) -> None:
    """The web admin included: other machines reach it through a TLS proxy on the host."""
    ports = published(compose)
    assert {name for name, _ in ports} >= {"web", "flower", "rabbitmq", "mailpit", "bounces"}
    assert [entry for entry in ports if entry[1] != "127.0.0.1"] == []


def test_flower_requires_basic_auth_from_the_environment(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == (
        "${FLOWER_BASIC_AUTH:?set FLOWER_BASIC_AUTH}"
    )
    assert not any("auth" in part for part in _command(compose, "flower"))  # nothing overrides it


def test_every_secret_is_mandatory_and_no_default_password_remains(
    compose: dict[str, Any],
) -> None:
    text = (ROOT / "compose.yaml").read_text()
    references = re.findall(r"\$\{(\w+)(:?[-?])?", text)
    secrets = {(name, op) for name, op in references if SECRET_NAME.search(name)}
    assert {name for name, _ in secrets} >= {
        "DJANGO_SECRET_KEY",
        "POSTGRES_PASSWORD",
        "RABBITMQ_PASSWORD",
        "FLOWER_BASIC_AUTH",
    }
    assert {(name, op) for name, op in secrets if op != ":?"} == set(), "a secret has a default"
    # No credentials written into a URL, and the services take their passwords from the same
    # mandatory variables as the URLs the apps connect with.
    assert not re.search(r"://[^/\s:@]+:(?!\$\{)[^@\s]+@", text)
    services = compose["services"]
    web = services["web"]["environment"]
    assert "${RABBITMQ_PASSWORD:?" in services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"]
    assert "${RABBITMQ_PASSWORD:?" in web["CELERY_BROKER_URL"]
    assert "${POSTGRES_PASSWORD:?" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert "${POSTGRES_PASSWORD:?" in web["DATABASE_URL"]
