"""Typed readers for the environment.

Every setting that can change between machines is read here, through helpers that fail loudly
(ImproperlyConfigured) on a value they cannot understand, instead of silently falling back.
A secret may also come from a file: ``NAME_FILE=/run/secrets/name`` wins over ``NAME``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path!r} cannot be read: {exc}") from exc
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"The environment variable {name} is required.")
        return default
    return value


def env_optional(name: str) -> str | None:
    value = env_str(name, "")
    return value or None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false).")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of {', '.join(choices)}.")
    return value


def env_prefixed(prefix: str) -> dict[str, str]:
    """Every ``<prefix><NAME>`` variable as ``{NAME: value}``; ``<prefix><NAME>_FILE`` works too.

    For settings a library names itself (django-anymail's ``ANYMAIL_POSTMARK_SERVER_TOKEN`` is
    ``ANYMAIL["POSTMARK_SERVER_TOKEN"]``): whatever the library documents can be set, secrets
    from files included, without opsdash listing each name.
    """
    names = {key.removesuffix("_FILE") for key in os.environ if key.startswith(prefix)}
    found = {name[len(prefix) :]: env_str(name, "") for name in sorted(names) if name != prefix}
    return {key: value for key, value in found.items() if key and value}


def env_pacing(name: str, default: str) -> tuple[float, float, float, int, int]:
    """A provider's pacing: ``floor:start:ceiling`` messages per second, then optionally
    ``:per_hour:per_day`` caps (0 or missing: none). An empty value turns the provider's
    adaptive rate off: (0, 0, 0, caps)."""
    raw = env_str(name, default).strip()
    parts = [part.strip() for part in raw.split(":")] if raw else []
    if parts and len(parts) not in (3, 4, 5):
        raise ImproperlyConfigured(
            f"{name}={raw!r} must be floor:start:ceiling[:per_hour[:per_day]] (per second)."
        )
    try:
        rates = [float(part) for part in parts[:3]] or [0.0, 0.0, 0.0]
        caps = [int(part or 0) for part in parts[3:]] + [0, 0]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} holds a value that is not a number.") from exc
    floor, start, ceiling = rates
    if parts and not 0 < floor <= start <= ceiling:
        raise ImproperlyConfigured(f"{name}={raw!r} needs 0 < floor <= start <= ceiling.")
    if min(caps) < 0:
        raise ImproperlyConfigured(f"{name}={raw!r}: the hourly and daily caps cannot be negative.")
    return floor, start, ceiling, caps[0], caps[1]


def persistent_secret(path: Path) -> str:
    """A random secret generated on first use and kept in ``path`` (mode 0600) from then on.

    Web, worker and beat often start together and must agree on the value, so it is created
    atomically:
    1. A file already there wins (read and returned).
    2. Otherwise a fresh value is written in full to a private temporary file beside ``path``
       (``mkstemp`` creates it 0600) and hard-linked to ``path``. The link fails if another
       process got there first, and then that process's value is the one returned: nobody ever
       reads a half-written file or keeps a value that lost the race.
    """
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(64))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            Path(temporary).unlink()
    value = path.read_text().strip()
    if not value:
        raise ImproperlyConfigured(f"{path} is empty: delete it to generate a new secret.")
    return value
