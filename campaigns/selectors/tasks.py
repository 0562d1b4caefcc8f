"""Celery task results in words: what the task was, how it went, how long it took, what it said.

A TaskResult row holds Celery's own vocabulary (``campaigns.tasks.deliver_batch``, ``SUCCESS``,
a JSON-encoded return value, a traceback). The admin shows it as "Delivery batch for “Spring
newsletter” — succeeded", "1.4 s" and a small table of what the task returned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.text import capfirst
from django_celery_results.models import TaskResult

from campaigns.selectors.zoned import zoned

# Every task the project defines, as staff would name it.
TASK_WORDS = {
    "campaigns.tasks.launch_send": "Launch of a send",
    "campaigns.tasks.fire_scheduled_send": "Scheduled send",
    "campaigns.tasks.deliver_batch": "Delivery batch",
    "campaigns.tasks.send_test_message": "Test message",
    "campaigns.tasks.run_import": "Import",
    "campaigns.tasks.reap_deliveries": "Check for stuck deliveries",
    "campaigns.tasks.redispatch_orphans": "Restart of orphaned batches",
    "campaigns.tasks.purge_task_results": "Clean-up of old task results",
    "campaigns.tasks.purge_import_files": "Clean-up of old import files",
}

# Celery's states, as the outcome of a task.
STATE_WORDS = {
    "PENDING": "waiting",
    "RECEIVED": "received",
    "STARTED": "running",
    "RETRY": "retrying",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "cancelled",
    "IGNORED": "ignored",
}


def task_words(task_name: str | None) -> str:
    """ "Delivery batch" for campaigns.tasks.deliver_batch; another task by its own name."""
    if not task_name:
        return "Task"
    if task_name in TASK_WORDS:
        return TASK_WORDS[task_name]
    return capfirst(task_name.rsplit(".", 1)[-1].replace("_", " "))


def state_words(status: str | None) -> str:
    return STATE_WORDS.get(status or "", (status or "unknown").lower())


def task_title(*, task_name: str | None, status: str | None, about: str = "") -> str:
    """ "Delivery batch for “Spring newsletter” — succeeded"; ``about`` names what it served."""
    subject = task_words(task_name)
    if about:
        subject = f"{subject} for {about}"
    return f"{subject} — {state_words(status)}"


def task_seconds(
    *, created: datetime | None, started: datetime | None, done: datetime | None
) -> float | None:
    """How long the task ran: from its start (or, unrecorded, its creation) to its end."""
    begin = started or created
    if begin is None or done is None or done < begin:
        return None
    return (done - begin).total_seconds()


def seconds_words(seconds: float | None) -> str:
    """ "1.4 s", "12 s", "3 min 5 s"; "—" when unknown."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


@dataclass(frozen=True)
class TaskOutput:
    """What a task returned, readable: a sentence, or name/value rows."""

    sentence: str
    rows: list[tuple[str, str]]


def task_output(raw: str | None) -> TaskOutput:
    """The stored result (JSON) as words: an error as "SMTPServerDisconnected: gone", a
    mapping as rows, anything else as its text."""
    value = _decode(raw)
    if value is None or value == "":
        return TaskOutput("Nothing returned.", [])
    if isinstance(value, dict) and "exc_type" in value:
        message = value.get("exc_message")
        if isinstance(message, list | tuple):
            message = ", ".join(str(part) for part in message)
        return TaskOutput(f"{value['exc_type']}: {message}" if message else value["exc_type"], [])
    if isinstance(value, dict):
        rows = [(capfirst(str(key).replace("_", " ")), _words(item)) for key, item in value.items()]
        return TaskOutput("", rows)
    return TaskOutput(_words(value), [])


def _decode(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


def _words(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_words(item) for item in value) or "none"
    if isinstance(value, dict):
        pairs = (f"{str(key).replace('_', ' ')}: {_words(item)}" for key, item in value.items())
        return ", ".join(pairs)
    return str(value)


def traceback_last_line(traceback: str) -> str:
    """A traceback's last line (the exception), shown before the whole of it."""
    lines = [line for line in traceback.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "Traceback"


@dataclass(frozen=True)
class TaskLine:
    """One task result as a line of a send's page: every cell already in words."""

    result: TaskResult
    name: str
    state: str
    queued: str
    done: str
    took: str
    said: str


def task_lines(results: Iterable[TaskResult]) -> list[TaskLine]:
    """Task results as a table reads them: "Delivery batch", "succeeded", "1.4 s", and what the
    task returned or the error it raised as one line, never a JSON blob."""
    return [_task_line(result) for result in results]


def result_created(result: TaskResult) -> datetime | None:
    return getattr(result, "date_created", None)  # left out of the type stubs


def result_started(result: TaskResult) -> datetime | None:
    return getattr(result, "date_started", None)  # left out of the type stubs


def result_took(result: TaskResult) -> str:
    """How long a task result's task ran, in words ("1.4 s")."""
    created, started = result_created(result), result_started(result)
    return seconds_words(task_seconds(created=created, started=started, done=result.date_done))


def _task_line(result: TaskResult) -> TaskLine:
    return TaskLine(
        result=result,
        name=task_words(result.task_name),
        state=state_words(result.status),
        queued=zoned(result_created(result)),
        done=zoned(result.date_done),
        took=result_took(result),
        said=_said(result),
    )


def _said(result: TaskResult) -> str:
    if result.traceback:
        return traceback_last_line(result.traceback)
    output = task_output(result.result)
    if output.rows:
        return "; ".join(f"{name}: {value}" for name, value in output.rows)
    return output.sentence
