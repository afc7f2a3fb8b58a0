"""What ``plugin-service run`` does on signals: SIGTERM and SIGINT stop it (the
first drains, a second stops now), with a line on stderr; SIGUSR1 writes a status
line on stderr, and a line for each handler stack in it, from a thread of its own."""
from __future__ import annotations

import argparse
import json
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any

from .._host import PluginHost
from .._signals import _SignalDrain
from .streams import _Stream

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_STATUS_SIGNAL: int | None = getattr(signal, "SIGUSR1", None)  # none on Windows


def _write_status(host: PluginHost, stderr: _Stream, reason: str) -> dict[str, Any]:
    """One ``{"status": ..., "reason": ...}`` line on stderr, then for each service
    whose status has a ``handler_stack`` (overdue, or past ``--stack-after``) one
    ``{"handler_stack": ..., "service": NAME, "reason": ...}`` line, together;
    returns the status."""
    snapshot: dict[str, Any] = host.status().to_dict()
    lines = [json.dumps({"status": snapshot, "reason": reason})]
    services = snapshot.get("services")
    for name, service in (services if isinstance(services, dict) else {}).items():
        stack = service.get("handler_stack") if isinstance(service, dict) else None
        if stack is not None:
            lines.append(json.dumps({"handler_stack": stack, "service": name,
                                     "reason": reason}))
    with stderr.lock:  # no other line comes between them
        for line in lines:
            stderr.write_locked(line)
    return snapshot


class _StatusReporter:
    """Writes status lines to stderr from its own thread, on request.

    :meth:`request` only puts on a ``SimpleQueue``, which is safe in a signal
    handler; the snapshot is taken on the reporter thread, never inside the
    handler, which could otherwise wait on a lock its own thread holds.
    """

    def __init__(self, host: PluginHost, stderr: _Stream) -> None:
        self._host = host
        self._stderr = stderr
        self._requests: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="plugin-service-status",
                                        daemon=True)
        self._thread.start()

    def request(self, reason: str) -> None:
        self._requests.put(reason)

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while True:
            reason = self._requests.get()
            if reason is None:
                return
            _write_status(self._host, self._stderr, reason)


def _announce(args: argparse.Namespace, stderr: _Stream) -> Callable[[str, bool], None]:
    """What the run says on stderr when a stop signal arrives (on the signal thread)."""
    def bound(seconds: float | None, option: str) -> str:
        return f"no bound ({option})" if seconds is None else f"{seconds:g}s ({option})"

    def announce(name: str, forced: bool) -> None:
        if forced:
            stderr.write_line(f"plugin-service: {name} again: stopping now; queued events "
                              "are dropped, running handlers cancelled (they get "
                              f"{bound(args.cancel_grace, '--cancel-grace')} to return)")
        else:
            stderr.write_line(f"plugin-service: {name}: draining accepted events: up to "
                              f"{bound(args.stop_timeout, '--stop-timeout')} + "
                              f"{bound(args.cancel_grace, '--cancel-grace')}; press Ctrl-C "
                              "again (or send the signal again) to stop now")
    return announce


def _signal_drain(host: PluginHost, args: argparse.Namespace, stderr: _Stream,
                  reporter: _StatusReporter) -> _SignalDrain:
    """The signal handling of a run, installed at once (main thread only): SIGTERM and
    SIGINT stop ``host`` as :func:`~plugin_service.drain_on_signals` does, each
    announced on stderr; SIGUSR1, where there is one, asks ``reporter`` for a status
    line."""
    return _SignalDrain(host, timeout=None, signals=_STOP_SIGNALS,
                        on_signal=_announce(args, stderr),
                        also={} if _STATUS_SIGNAL is None
                        else {_STATUS_SIGNAL: reporter.request})
