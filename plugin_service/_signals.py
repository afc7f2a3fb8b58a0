"""Stop signals for a host: the first drains within the services' bounds, a second one
cuts the drain short, as uvicorn, gunicorn and ``docker stop`` users expect."""
from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from types import FrameType, TracebackType
from typing import Any, Optional

from loguru import logger

from . import errors
from ._guarded import failure_log

__all__ = ["drain_on_signals"]

_DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_QUIT = 0  # a byte no signal writes: tells the signal thread to return

#: ``on_signal(name, forced)``: a stop signal arrived; ``forced`` for the second one.
OnSignal = Callable[[str, bool], None]


def _ignore(signum: int, frame: Optional[FrameType]) -> None:
    """The Python-level handler: the work is done on the signal thread (see below)."""


class _SignalDrain:
    """What :func:`drain_on_signals` returns; see there.

    Why a thread: a Python signal handler runs on the main thread between two
    bytecodes, possibly while that thread holds a service's lock or is blocked in a
    wait that a signal delivered to another thread never interrupts. So the handlers
    do nothing, and ``signal.set_wakeup_fd`` makes the interpreter write each
    signal's number to a socket, from whichever thread it lands on; a small daemon
    thread reads that socket and acts, free to take locks.
    """

    def __init__(self, host: Any, *, timeout: Optional[float],
                 signals: Iterable[int], on_signal: Optional[OnSignal] = None,
                 also: Optional[Mapping[int, Callable[[str], None]]] = None) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise errors.LifecycleError(
                "drain_on_signals installs signal handlers: call it on the main thread, "
                "not on %r" % threading.current_thread().name)
        self._host = host
        self._timeout = timeout
        self._stop_signals = frozenset(signal.Signals(s) for s in signals)
        if not self._stop_signals:
            raise ValueError("drain_on_signals needs at least one signal")
        self._also = {signal.Signals(s): fn for s, fn in (also or {}).items()}
        self._on_signal = on_signal
        self._requested = threading.Event()
        self._reason: Optional[str] = None
        self._forced = False
        self._count = 0  # stop signals received; only the signal thread writes it
        self._closed = False

        self._wake_r, self._wake_w = socket.socketpair()  # the interpreter writes here
        self._stop_r, self._stop_w = socket.socketpair()  # readable once stop requested
        self._wake_w.setblocking(False)  # set_wakeup_fd requires it
        self._stop_w.setblocking(False)
        self._previous: list[tuple[signal.Signals, Any]] = []
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w.fileno(),
                                                warn_on_full_buffer=False)
        try:
            for signum in (*sorted(self._stop_signals), *sorted(self._also)):
                self._previous.append((signum, signal.signal(signum, _ignore)))
        except BaseException:
            self._restore()
            raise
        self._thread = threading.Thread(target=self._serve, name="plugin_service-signals",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ reading
    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self._requested.is_set()

    @property
    def reason(self) -> Optional[str]:
        """The name of the first stop signal (``"SIGTERM"``...), or None."""
        return self._reason

    @property
    def forced(self) -> bool:
        """True once a second stop signal cut the drain short."""
        return self._forced

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until a stop signal arrives (True) or ``timeout`` passes (False)."""
        return self._requested.wait(timeout)

    def fileno(self) -> int:
        """A file descriptor that turns readable once a stop signal arrived (and stays
        so), for a program that waits in ``select``."""
        return self._stop_r.fileno()

    # ------------------------------------------------------------ closing
    def close(self) -> None:
        """``host.close(timeout)`` on this thread, draining; a stop signal meanwhile
        counts like any other (the second cuts the drain short). Then the previous
        handlers and wake-up fd are back. Main thread only; idempotent."""
        if self._closed:
            return
        if threading.current_thread() is not threading.main_thread():
            raise errors.LifecycleError("close the drain_on_signals of the main thread "
                                        "on the main thread")
        try:
            self._host.close(self._timeout)
        finally:
            self._restore()

    def __enter__(self) -> _SignalDrain:
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    def _restore(self) -> None:
        self._closed = True
        signal.set_wakeup_fd(self._old_wakeup)
        for signum, handler in reversed(self._previous):
            if handler is not None:  # None: a handler not set from Python, left as is
                signal.signal(signum, handler)
        self._previous = []
        thread = getattr(self, "_thread", None)
        if thread is not None:
            try:
                self._wake_w.send(bytes([_QUIT]))
            except OSError:  # full: the thread has bytes to read and sees EOF below
                pass
            self._wake_w.shutdown(socket.SHUT_WR)
            thread.join()
        for sock in (self._wake_r, self._wake_w, self._stop_r, self._stop_w):
            sock.close()

    # ------------------------------------------------------ signal thread
    def _serve(self) -> None:
        while True:
            try:
                data = self._wake_r.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum == _QUIT:
                    return
                try:
                    self._dispatch(signum)
                except Exception as exc:  # a callback's bug must not end the signal thread
                    # Redacted frames, never loguru's exception=: a sink's diagnose
                    # would print every frame's values, and the text unredacted.
                    logger.error("signal {} handling raised {}", signum, failure_log(exc))

    def _dispatch(self, signum: int) -> None:
        # Other signals (their own Python handlers run on the main thread as usual)
        # write here too while this wake-up fd is set: they are not ours to act on.
        if signum in self._stop_signals:
            self._stop_signal(signal.Signals(signum).name)
        elif signum in self._also:
            self._also[signal.Signals(signum)](signal.Signals(signum).name)

    def _stop_signal(self, name: str) -> None:
        self._count += 1
        if self._count == 1:
            self._reason = name
            self._requested.set()
            try:
                self._stop_w.send(b"s")
            except OSError:
                pass
            logger.info("{}: stop requested; draining (a second signal stops now)", name)
            if self._on_signal is not None:
                self._on_signal(name, False)
        elif self._count == 2:
            self._forced = True
            logger.warning("{} again: cutting the drain short", name)
            if self._on_signal is not None:
                self._on_signal(name, True)
            self._host._hurry()


def drain_on_signals(host: Any, *, timeout: Optional[float] = None,
                     signals: Iterable[int] = _DEFAULT_SIGNALS,
                     on_signal: Optional[OnSignal] = None) -> _SignalDrain:
    """Turn ``signals`` (default SIGTERM and SIGINT) into a bounded, draining stop of
    ``host``; returns a context manager.

    Installs a handler for each signal (and a ``signal.set_wakeup_fd``) at once, so
    it must be called on the main thread (``errors.LifecycleError`` otherwise). The
    first signal only requests a stop: the returned object's ``requested`` turns
    True, ``wait()`` returns and ``fileno()`` turns readable, so the program leaves
    its serve loop. Leaving the ``with`` block (or ``close()``) runs
    ``host.close(timeout)`` on the main thread: every accepted event is still
    delivered, each service bounded by its ``stop_timeout`` then ``cancel_grace``.
    A second signal, before or during that drain, cuts it short: queued events are
    dropped (their futures fail with ``ServiceStopped``) and running handlers are
    cancelled, each given its ``cancel_grace`` to return. Then the previous handlers
    and wake-up fd are restored.

    ``on_signal(name, forced)`` runs on a small daemon thread (never inside a
    signal handler), after the first stop signal (``forced=False``) and after the
    second (``forced=True``); a program can say there that it is draining.
    """
    return _SignalDrain(host, timeout=timeout, signals=signals, on_signal=on_signal)
