"""The outcome line of ``plugin-service run``: for each input line, one JSON record
of what became of it (``succeeded``, ``failed``, ``timed_out``, ``dropped`` or
``rejected``), built by :func:`_outcome_line` alone."""
from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any

from .. import errors
from .._diagnostics import DiagnosticKind, jsonable


def _json_safe(value: Any) -> Any:
    """``value`` if JSON can carry it, else its status-style conversion, else its repr."""
    for candidate in (value, jsonable(value)):
        try:
            json.dumps(candidate, allow_nan=False)
            return candidate
        except (TypeError, ValueError, RecursionError):
            continue
    try:
        return repr(value)
    except Exception:  # a plugin's __repr__ may raise anything
        return f"<unrepresentable {type(value).__name__}>"


def _error(type_name: str, kind: str, message: str) -> dict[str, str]:
    return {"type": type_name, "kind": kind, "message": message}


def _error_of(exc: BaseException) -> dict[str, str]:
    kind = exc.kind.value if isinstance(exc, errors.PluginServiceError) else "error"
    return _error(type(exc).__name__, kind, str(exc))


def _outcome_of(exc: BaseException) -> str:
    if isinstance(exc, (errors.DispatchTimeout, errors.ToolTimeout)):
        return "timed_out"
    if isinstance(exc, (errors.ServiceStopped, errors.ServiceFailed, errors.HostClosed)):
        return "dropped"  # accepted, then withdrawn by a stop or a failure
    return "failed"


def _settled(future: Future[Any]) -> tuple[str, str, Any]:
    """``(outcome, "result" | "error", value)`` of a done ``future``; ``value`` is
    JSON-safe."""
    if future.cancelled():
        return "dropped", "error", _error(
            "CancelledError", DiagnosticKind.SERVICE_STOPPED.value, "cancelled")
    exc = future.exception()
    if exc is None:
        return "succeeded", "result", _json_safe(future.result())
    return _outcome_of(exc), "error", _error_of(exc)


def _outcome_line(number: int, cid: Any, key: str, target: Any, outcome: str, what: str,
                  value: Any) -> str:
    """The outcome record of input line ``number`` as one JSON line (no newline):
    ``{"correlation_id": cid, key: target, "outcome": outcome, what: value, "line":
    number}``, ``key`` being ``"service"`` or ``"tool"`` and ``what`` ``"result"`` or
    ``"error"``. ``cid`` and ``target`` may be anything a line carried; ``value`` must
    be JSON-safe already (a :func:`_json_safe` result or an error record)."""
    record = {"correlation_id": _json_safe(cid), key: _json_safe(target),
              "outcome": outcome, what: value, "line": number}
    return json.dumps(record, allow_nan=False)
