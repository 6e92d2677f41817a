"""What makes a run over many photos resumable and readable, shared by ``batch`` and ``eval-unmask``.

* A *done marker* (a small JSON file) is written last into a photo's output
  folder, after every output file was replaced atomically; a rerun trusts a
  photo only when its marker matches the current settings.
* Reports (CSV, HTML) are rewritten as the run goes, at most every
  ``REPORT_INTERVAL_S`` seconds (rewriting is O(photos)), and always at the end.
* One bad photo never stops a run: :func:`attempt` turns its error into one
  readable line; only an interrupt (Ctrl-C, exit) goes through.
"""
from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from ..atomic import atomic_write_text
from ..errors import UnmaskError

__all__ = ["MARKER_VERSION", "REPORT_INTERVAL_S", "jsonable", "describe_error", "attempt", "read_marker",
           "write_marker", "ThrottledReport", "count_statuses"]

#: The done markers' format version.
MARKER_VERSION = 1
#: Reports are rewritten at most this often during a run (and always at its end).
REPORT_INTERVAL_S = 5.0


def jsonable(obj):
    """``obj`` as it reads back from JSON (paths and other objects as strings), for comparing settings."""
    return json.loads(json.dumps(obj, default=str))


def describe_error(exc: BaseException) -> str:
    """One line for a report: our own errors as they are, others with their type and where they happened."""
    if isinstance(exc, UnmaskError):
        return str(exc)
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def attempt(fn: Callable[..., Any], *args, **kwargs) -> Tuple[Any, Optional[BaseException]]:
    """``(fn(...), None)``, or ``(None, the exception)`` for any error but an interrupt."""
    try:
        return fn(*args, **kwargs), None
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - one bad photo never stops the run; the caller reports it
        return None, exc


def read_marker(path: Path, version: Optional[int] = None) -> Optional[Dict[str, Any]]:
    """The marker at ``path`` (of ``version``, when given), or None when it is missing or unreadable."""
    try:
        marker = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or (version is not None and marker.get("version") != version):
        return None
    return marker


def write_marker(path: Path, **fields) -> Path:
    """Write a done marker atomically: the version, ``fields``, and when it was finished."""
    marker = {"version": MARKER_VERSION, **fields, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return atomic_write_text(path, json.dumps(marker, indent=1, default=str))


class ThrottledReport:
    """``report(force=False)`` calls ``write()`` at most every ``interval`` seconds; ``report()`` always."""

    def __init__(self, write: Callable[[], None], interval: float = REPORT_INTERVAL_S):
        self._write = write
        self._interval = interval
        self._last = 0.0

    def __call__(self, force: bool = True) -> None:
        if not force and time.monotonic() - self._last < self._interval:
            return
        self._last = time.monotonic()
        self._write()


def count_statuses(statuses: Iterable[str], kinds: Iterable[str] = ("ok", "failed", "skipped")) -> Dict[str, int]:
    """How many of each status, in the order of ``kinds``."""
    statuses = list(statuses)
    return {k: sum(s == k for s in statuses) for k in kinds}
