from __future__ import annotations

import ast
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from opsdash.env import env_bool, env_int, env_str

ROOT = Path(__file__).resolve().parent.parent


def test_typed_helpers_fail_loudly_on_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_INT", "twelve")
    monkeypatch.setenv("X_BOOL", "perhaps")
    with pytest.raises(ImproperlyConfigured, match="X_INT='twelve' is not a whole number"):
        env_int("X_INT", 1)
    with pytest.raises(ImproperlyConfigured, match="is not a boolean"):
        env_bool("X_BOOL", False)
    monkeypatch.setenv("X_LOW", "0")
    with pytest.raises(ImproperlyConfigured, match="must be at least 1"):
        env_int("X_LOW", 5, minimum=1)
    with pytest.raises(ImproperlyConfigured, match="X_REQUIRED is required"):
        env_str("X_REQUIRED")


def test_a_secret_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("X_SECRET", "from-env")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert env_str("X_SECRET") == "s3cret"


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OPSDASH_ENV"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_the_deployment_checks() -> None:
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        OPSDASH_ENV="production",
        DJANGO_SECRET_KEY="x" * 20 + "a-long-random-production-secret-for-the-check-0123456789",
        DJANGO_ALLOWED_HOSTS="ops.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key() -> None:
    result = run_manage("check", OPSDASH_ENV="production", DJANGO_ALLOWED_HOSTS="ops.example.com")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


# --- Insecure defaults: no committed key, a generated one per installation, DEBUG off ---------

SETTINGS_PROBE = (
    "import json; from opsdash import settings as s; "
    "print(json.dumps({'debug': s.DEBUG, 'key': s.SECRET_KEY}))"
)


def settings_values(var_dir: Path, **env: str) -> subprocess.Popen[str]:
    """Starts a process that loads the settings on its own var/ folder and prints two values."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OPSDASH_"))}
    return subprocess.Popen(
        [sys.executable, "-c", SETTINGS_PROBE],
        cwd=ROOT,
        env={**base, "OPSDASH_VAR_DIR": str(var_dir), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def loaded(process: subprocess.Popen[str]) -> dict[str, object]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    values: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return values


def test_the_committed_settings_contain_no_secret_key() -> None:
    tree = ast.parse((ROOT / "opsdash" / "settings.py").read_text())
    assignments = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "SECRET_KEY" for t in node.targets)
    ]
    assert assignments, "settings.py assigns SECRET_KEY"
    for node in assignments:
        literals = [
            c.value
            for c in ast.walk(node.value)
            if isinstance(c, ast.Constant) and isinstance(c.value, str)
        ]
        # Only environment variable names may appear, never a value usable as a key.
        assert all(re.fullmatch(r"[A-Z_]+|secret_key", value) for value in literals), literals


def test_processes_started_together_share_one_generated_key(tmp_path: Path) -> None:
    """Web, worker and beat start at once on a fresh var/ folder and must sign alike."""
    started = [settings_values(tmp_path) for _ in range(4)]
    keys = {loaded(process)["key"] for process in started}
    assert len(keys) == 1
    key = keys.pop()
    assert isinstance(key, str) and len(key) >= 50
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".secret_key")] == []
    # A later start keeps it; another installation gets its own.
    assert loaded(settings_values(tmp_path))["key"] == key
    assert loaded(settings_values(tmp_path / "other"))["key"] != key


def test_a_key_from_the_environment_wins_and_writes_nothing(tmp_path: Path) -> None:
    assert loaded(settings_values(tmp_path, DJANGO_SECRET_KEY="k" * 60))["key"] == "k" * 60
    assert not (tmp_path / "secret_key").exists()


def test_debug_is_off_unless_asked_for(tmp_path: Path) -> None:
    assert loaded(settings_values(tmp_path))["debug"] is False
    assert loaded(settings_values(tmp_path, DJANGO_DEBUG="true"))["debug"] is True


def test_the_demo_asks_for_debug_for_its_own_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from campaigns.management.commands.demo import demo_env

    monkeypatch.delenv("DJANGO_DEBUG", raising=False)
    assert demo_env(port=1, smtp_port=2, maildir=tmp_path)["DJANGO_DEBUG"] == "true"
    monkeypatch.setenv("DJANGO_DEBUG", "false")
    assert demo_env(port=1, smtp_port=2, maildir=tmp_path)["DJANGO_DEBUG"] == "false"
