"""Runs inside a service's actor process: builds the plugin and calls it."""
from __future__ import annotations

import datetime as _dt
import os
import threading
import time
from typing import Any, List, Optional, Tuple

from .._context import DispatchContext
from .._stacks import HandlerStack, thread_stack
from .batch import POLL_S, Outcome, Outcomes, portable, resend, unpack_events
from .progress import Marker

_monotonic = time.monotonic


def _earlier(deadline: Optional[float], event: Any) -> Optional[float]:
    """``ctx.deadline`` here: the dispatch deadline, or the event's own
    ``expires_at`` (read on this machine's clocks) when that comes first."""
    expires = getattr(event, "expires_at", None)
    if expires is None:
        return deadline
    own = _monotonic() + (expires - _dt.datetime.now(_dt.timezone.utc)).total_seconds()
    return own if deadline is None or own < deadline else deadline

class _PluginActor:
    """Runs inside the actor process: builds the plugin and calls it.

    Plugin calls (``start``, ``handle``, ``stop``) share the actor's default
    concurrency group of one thread, so Ray runs them one at a time in the order
    the host sent them (``max_concurrency=1`` keeps Ray's in-order execution).
    ``cancel`` and ``status`` have a group of their own, answered while a handler
    runs, ``stack`` one more (a stuck plugin ``status()`` cannot hold it up), and
    ``outcomes`` another (see ``batch.py``). The host sends events ahead, one per
    ``handle`` call or many per ``handle_many`` call, each with its sequence
    number and batch; when one ends unclean (it raised, was cancelled, or returned
    past its deadline) its batch is closed: the rest of that batch is skipped,
    unrun, and the host decides what comes next, as it would with one event at a
    time.
    """

    def __init__(self, target: Any, is_factory: bool) -> None:
        self._target = target
        self._is_factory = is_factory
        self._plugin: Any = None
        self._lock = threading.Lock()
        self._closed = -1  # batches up to this one are closed: skip their events
        self._ctx: Optional[DispatchContext] = None
        self._ctx_seq = -1
        self._marker: Optional[Marker] = None
        self._outcomes = Outcomes()
        self._handler_thread: Optional[int] = None  # the ident plugin calls run on

    def start(self, where: Any = None) -> Tuple[list, bool]:  # type: ignore[type-arg]
        """Build and start the plugin; ``(its ingresses, whether this actor marks
        what it begins in the host's record)``: see ``progress.py``."""
        import ray

        self._marker = Marker.open(ray, where)
        plugin = self._target() if self._is_factory else self._target
        plugin.start()
        self._plugin = plugin
        return list(getattr(plugin, "ingresses", ())), self._marker is not None

    def handle(self, call: Tuple[int, int, Any, Optional[float]]) -> Any:
        """``(ran, value, clean)``, or the handler's exception. A raise, a
        cancelled or a late handler closes the batch: the host learns that outcome
        (and decides on a retry, ``fail_after``...) before anything later runs."""
        seq, batch, event, timeout = call
        return self._run(seq, batch, event, timeout)

    def handle_many(self, call: Tuple[int, Optional[float], int, int, bytes]
                    ) -> List[Outcome]:
        """Events ``first..first+count-1`` of one batch, pickled in one blob, run in
        order as ``handle`` runs each; every one's outcome goes to ``outcomes`` as
        it ends, and the list of them is the reply. A blob that cannot be
        unpickled closes the batch: every event of it is answered ``RESEND``.
        ``SystemExit`` ends the process, as in ``handle``."""
        batch, timeout, first, count, blob = call
        outcomes = self._outcomes
        done = outcomes.begin()
        events = unpack_events(blob, count)
        if events is None:
            self._close(batch)
            for seq in range(first, first + count):
                outcomes.add(done, resend(seq))
            return done
        for seq, event in enumerate(events, first):
            try:
                ran, value, clean = self._run(seq, batch, event, timeout)
                outcome = portable(seq, ran, value, clean, False)
            except SystemExit:
                raise
            except BaseException as exc:  # the handler's failure: this event's outcome
                outcome = portable(seq, True, exc, False, True)
            outcomes.add(done, outcome)
        return done

    def outcomes(self, after: int) -> List[Outcome]:
        """The running batch's outcomes of events past ``after``, once there is
        one; [] after ``POLL_S`` seconds (the host asks again if it waits)."""
        return self._outcomes.after(after, POLL_S)

    def _run(self, seq: int, batch: int, event: Any, timeout: Optional[float]) -> Any:
        with self._lock:
            if batch <= self._closed:
                return _SKIPPED
            deadline = None if timeout is None else _monotonic() + timeout
            ctx = self._ctx = DispatchContext(event, _earlier(deadline, event))
            self._ctx_seq = seq
            # Ray's thread for the default group, noted for stack(): one
            # assignment beside a Ray round trip, not worth a guess at start.
            self._handler_thread = threading.get_ident()
        marker = self._marker
        if marker is not None:
            marker.begin(seq)  # before the plugin sees it: a crash now cannot hide it
        try:
            value = self._plugin.handle_ingress(event, ctx)
        except BaseException:
            self._close(batch)
            raise
        finally:
            if marker is not None:
                marker.end(seq)
            with self._lock:
                self._ctx = None
        clean = not ctx.cancelled and (deadline is None or _monotonic() <= deadline)
        if not clean:
            self._close(batch)
        return True, value, clean

    def _close(self, batch: int) -> None:
        with self._lock:
            if batch > self._closed:
                self._closed = batch

    def cancel(self, seq: int, batch: int) -> None:
        """Cancel event ``seq`` (``ctx.cancelled`` turns True if it runs) and skip
        the rest of its batch; ``seq=-1`` only skips (a recall)."""
        with self._lock:
            if batch > self._closed:
                self._closed = batch
            ctx = self._ctx if self._ctx_seq == seq else None
        if ctx is not None:
            ctx._cancel()

    def stack(self) -> HandlerStack:
        """The current stack of the thread that runs this actor's handlers (see
        ``_stacks``: bounded, redacted, no locals); runs no plugin code."""
        ident = self._handler_thread
        name = "ray actor pid %d" % os.getpid()
        for thread in threading.enumerate():
            if thread.ident == ident:
                name = "%s, thread %s" % (name, thread.name)
        return thread_stack(ident, name)

    def status(self) -> Any:
        plugin = self._plugin
        return None if plugin is None else plugin.status()

    def stop(self) -> None:
        if self._plugin is not None:
            self._plugin.stop()

    def on_failure(self, diagnostic: Any) -> None:
        """The service failed because of its events: the plugin's own cleanup."""
        plugin = self._plugin
        if plugin is None:
            return
        hook = getattr(plugin, "on_failure", None)
        if hook is not None:
            hook(diagnostic)
        else:
            plugin.stop()


_SKIPPED = (False, None, False)
_CONTROL = "control"  # the concurrency group of cancel and status
_OUTCOMES = "outcomes"  # the concurrency group of outcomes
_STACKS = "stacks"  # the concurrency group of stack
