"""On the host: the proxy plugin of one life of one service, backed by one
fresh actor, and the session that makes one per life."""
from __future__ import annotations

import collections
import functools
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import errors
from .._config import ServiceConfig
from .._context import DispatchContext
from .._plugin import ServicePlugin
from .._redact import sanitize
from .._service import RetryCutShort
from .._stacks import HandlerStack, Ready, StackAnswer, remaining
from .batch import CALL_MAX, RESEND, Outcome, answer_of, pack_events
from .progress import Record
from .tools import _cause

if TYPE_CHECKING:  # pragma: no cover
    from .backend import RayBackend

_monotonic = time.monotonic


class Undeliverable(Exception):
    """An event that could not be sent to the plugin's process (it cannot be
    pickled, say); its cause says why. The handler never saw it."""


class _ActorProxy(ServicePlugin):
    """On the host: one life of one service, backed by one fresh actor.

    The service's worker drives it through ``_send_many``/``_receive`` (see
    ``PipelineDispatcher``); ``handle_ingress`` is one round trip, used for a
    retry. Everything sent and not yet answered is in ``_sent``, oldest
    first, all of one batch; a closed batch (a cancel, a recall, an unclean
    answer) makes the next send open a new one. One event goes in a ``handle``
    call of its own; more go together in ``handle_many`` calls (``batch.py``).
    """

    def __init__(self, backend: "RayBackend", name: str, target: Any, is_factory: bool,
                 config: ServiceConfig, watchdog: Any = None, window: int = 1) -> None:
        self._backend = backend
        self._name = name
        self._target = target
        self._is_factory = is_factory
        self._grace = config.cancel_grace
        self._watchdog = watchdog
        self._actor: Any = None
        self.ingresses: Any = ()
        self._lock = threading.Lock()
        self._seq = 0
        self._batch = 0  # the batch of what is in ``_sent``, or of the next send
        self._closed = -1  # the newest batch known closed
        self._sent: "collections.deque[List[Any]]" = collections.deque()
        self._killed: Optional[str] = None
        self._killed_seq = -1  # the stuck event the host killed the actor for
        self._solo = -1  # the seq a single round trip (a retry) waits for
        self._record: Optional[Record] = None  # what the actor began (progress.py)
        self._crash_told = False  # an outstanding event got this life's crash
        # Every seq outstanding at once fits the record's ring (progress.py).
        self._slots = max(1, window) + 2
        self._known: Dict[int, Outcome] = {}  # outcomes of batched events, by seq
        self._poll: Any = None  # the outstanding ``outcomes`` call, if any
        self._alone = 0  # how many of the next events go one per call (RESEND)

    def _crashed(self, exc: BaseException, seq: Optional[int] = None) -> errors.PluginCrashed:
        known = None if seq is None else self._progress(seq)
        died = self._killed or "the actor process of service %r died: %s" % (self._name, exc)
        if seq is None:
            why = died
        elif known is None:
            why = ("%s; this event may have run (what the actor began is not known "
                   "off the host's node); it is not run again" % died)
        elif known[1]:
            why = ("%s; this event ran, but its outcome was lost with the process; it "
                   "is not run again" % died)
        elif known[0]:
            why = "%s; this event was the one running: it died while it ran" % died
        else:
            why = "%s; this event had not begun (it did not run)" % died
        return errors.PluginCrashed(why, service=self._name)

    def _progress(self, seq: int) -> Optional[Any]:
        """After the actor died: ``(began, ended)`` of event ``seq``, or None."""
        record = self._record
        known = None if record is None else record.began(seq)
        if known is not None or self._killed is None:
            return known
        # Killed by the host, off its node (no record): the stuck one ran and those
        # before it ended; one after it in its batch may have begun (the host
        # learns of an end only from a reply), so of those nothing is known.
        return (True, seq < self._killed_seq) if seq <= self._killed_seq else None

    def _unrun_after_crash(self, seq: int) -> bool:
        """Whether event ``seq``, outstanding when the actor died, is known never
        to have begun and may go to the next actor. The first outstanding one
        always carries the crash instead (the service fails once, with it)."""
        known = self._progress(seq)
        with self._lock:
            first, self._crash_told = not self._crash_told, True
        return known is not None and not known[0] and not first

    def _get(self, ref: Any, seq: Optional[int] = None) -> Any:
        ray = self._backend._ray()
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            raise _cause(exc) from None
        except ray.exceptions.RayActorError as exc:
            if seq is not None and self._unrun_after_crash(seq):
                return _UNRUN
            raise self._crashed(exc, seq) from exc

    def start(self) -> None:
        self._actor = self._backend._new_actor(self._name, self._target, self._is_factory)
        record = self._record = Record(self._backend._ray(), self._slots)
        try:
            ingresses, tracked = self._get(self._actor.start.remote(record.where()))
        except BaseException:
            record.release()
            raise
        record.ready(tracked)
        self.ingresses = tuple(ingresses)

    # -------------------------------------------------- the pipelined dispatch
    def _send_many(self, sends: Sequence[Tuple[Any, DispatchContext]],
                   timeout: Optional[float]) -> None:
        """Hand events to the actor, in order; their answers come from
        ``_receive``. One goes alone; more go up to ``CALL_MAX`` a call."""
        alone = min(self._alone, len(sends))
        if alone:  # came back RESEND: the actor could not unpickle their call
            self._alone -= alone
            for future, ctx in sends[:alone]:
                self._send(future, ctx, timeout)
        for start in range(alone, len(sends), CALL_MAX):
            chunk = sends[start:start + CALL_MAX]
            blob = pack_events([future.event for future, _ctx in chunk]) \
                if len(chunk) > 1 else None
            if blob is None or not self._send_call(chunk, blob, timeout):
                for future, ctx in chunk:  # one cannot be pickled: Ray says which
                    self._send(future, ctx, timeout)

    def _send_call(self, chunk: Sequence[Tuple[Any, DispatchContext]], blob: bytes,
                   timeout: Optional[float]) -> bool:
        """One ``handle_many`` call for ``chunk``; False if it could not be sent."""
        call = _Call()
        count = len(chunk)
        with self._lock:
            batch, first = self._joining(), self._seq
            try:
                call.ref = self._actor.handle_many.remote((batch, timeout, first, count, blob))
            except Exception:
                return False
            self._seq = first + count
            self._sent.extend([call, first + i, batch, None] for i in range(count))
        for i, (_future, ctx) in enumerate(chunk):
            ctx._forward_cancel(functools.partial(self._cancel, first + i, batch))
        return True

    def _joining(self) -> int:
        """Under the lock: the batch of the next send."""
        if self._sent:  # join what is outstanding (the loop checked it is open)
            return int(self._sent[-1][2])
        if self._batch <= self._closed:
            self._batch = self._closed + 1
        return self._batch

    def _send(self, future: Any, ctx: DispatchContext, timeout: Optional[float]) -> None:
        """Hand one event to the actor in a call of its own."""
        with self._lock:
            batch = self._joining()
            seq = self._seq
            entry: List[Any] = [None, seq, batch, None]  # ref, seq, batch, error
            try:
                entry[0] = self._actor.handle.remote((seq, batch, future.event, timeout))
                self._seq = seq + 1
            except Exception as exc:  # it cannot be pickled, say: never sent
                entry[3] = _undeliverable(exc)
            self._sent.append(entry)
        if entry[3] is None:
            ctx._forward_cancel(lambda: self._cancel(seq, batch))

    def _may_send(self) -> bool:
        """False while anything outstanding belongs to a closed batch: it comes back
        unrun and goes first, so nothing newer may be sent before it."""
        with self._lock:
            return not self._sent or self._sent[0][2] > self._closed

    def _receive(self) -> Any:
        """The oldest answer: ``(ran, value, clean)``, or raise what the handler did."""
        ref, _seq, batch, error = self._sent[0]
        try:
            if error is not None:
                raise error
            return self._answer(ref, batch, _seq)
        finally:
            with self._lock:
                self._sent.popleft()

    def _answer(self, ref: Any, batch: int, seq: int) -> Any:
        """Wait for one answer; anything but a clean one closes its batch."""
        try:
            answer = self._await(ref, seq) if type(ref) is _Call else self._get(ref, seq)
        except BaseException:
            self._close(batch)
            raise
        if not answer[2]:
            self._close(batch)
        return answer

    def _await(self, call: "_Call", seq: int) -> Any:
        """The answer of batched event ``seq``: from what the actor's
        ``outcomes`` said while its batch ran, or from the batch's reply."""
        known = self._known
        ray = self._backend._ray()
        while seq not in known:
            if call.read:  # pragma: no cover - the reply has every event's outcome
                raise RuntimeError("no outcome for event %d" % seq)
            waits = [call.ref]
            if self._poll is None and self._actor is not None:
                self._poll = self._actor.outcomes.remote(seq - 1)
            if self._poll is not None:
                waits.append(self._poll)
            try:
                ready, _ = ray.wait(waits, num_returns=1)
                if ready[0] == call.ref:
                    got = ray.get(call.ref)
                    call.read = True
                else:
                    poll, self._poll = self._poll, None
                    got = ray.get(poll)
            except ray.exceptions.RayActorError as exc:
                self._poll = None
                if self._unrun_after_crash(seq):
                    return _UNRUN
                raise self._crashed(exc, seq) from exc
            except ray.exceptions.RayTaskError as exc:  # pragma: no cover - not the plugin's
                self._poll = None
                raise _cause(exc) from None
            for outcome in got:
                if outcome[0] >= seq:  # older ones are answered already
                    known[outcome[0]] = outcome
        outcome = known.pop(seq)
        if outcome[2] == RESEND:
            self._alone += 1
        return answer_of(outcome)

    def _close(self, batch: int) -> None:
        with self._lock:
            if batch > self._closed:
                self._closed = batch

    def _cancel(self, seq: int, batch: int) -> None:
        """The host cancelled event ``seq`` (deadline, stop): tell the actor, so its
        ``ctx.cancelled`` turns True and the rest of its batch is skipped; past the
        grace, kill the actor (a thread could never be)."""
        self._close(batch)
        actor = self._actor
        if actor is None:
            return
        actor.cancel.remote(seq, batch)
        if self._grace is not None and self._watchdog is not None and seq >= 0:
            self._watchdog.schedule(_monotonic() + self._grace, self._kill_if_stuck,
                                    actor, seq)

    def _recall(self, _unused: Any = None) -> None:
        """Skip everything sent and not begun (the service failed, or stops
        without drain)."""
        with self._lock:
            if not self._sent:
                return
            batch = self._sent[-1][2]  # the newest: closing it closes all before
        self._cancel(-1, batch)

    def _kill_if_stuck(self, actor: Any, seq: int) -> None:
        with self._lock:
            stuck = actor is self._actor and (
                self._solo == seq or (bool(self._sent) and self._sent[0][1] == seq))
            if stuck:
                self._killed_seq = seq
                self._killed = ("service %r: the actor was killed: its handler ignored "
                                "cancellation for %.3gs" % (self._name, self._grace or 0.0))
        if stuck:
            self._backend._ray().kill(actor, no_restart=True)

    def handle_ingress(self, event: Any, ctx: DispatchContext) -> Any:
        """One event, one round trip, in a batch of its own (a retry's attempt)."""
        with self._lock:
            self._batch = max(self._batch, self._closed) + 1
            seq, batch = self._seq, self._batch
            try:
                ref = self._actor.handle.remote((seq, batch, event, ctx.remaining()))
            except Exception as exc:
                raise _undeliverable(exc) from None
            self._seq = seq + 1
            self._solo = seq
        ctx._forward_cancel(lambda: self._cancel(seq, batch))
        try:
            ran, value, _clean = self._answer(ref, batch, seq)
        finally:
            self._solo = -1
        if not ran:
            raise RetryCutShort()  # skipped: a stop or cancel got there first
        return value

    def status(self) -> Any:
        if self._actor is None:
            return None
        try:
            return self._backend._ray().get(self._actor.status.remote(), timeout=1.0)
        except Exception:
            return None

    def _handler_stack(self) -> StackAnswer:
        """Ask the actor where its handler is (its ``stack`` group: answered while
        the handler runs, if the process can answer at all)."""
        actor = self._actor
        where = "ray actor of service %r" % self._name
        if actor is None:
            return Ready(HandlerStack(where, unavailable="the service has no actor"))
        try:
            ref = actor.stack.remote()
        except Exception as exc:
            return Ready(HandlerStack(where, unavailable="the actor cannot be asked: %s"
                                      % sanitize(exc, 200)))
        return _RemoteStack(self._backend._ray(), ref, where)

    def stop(self) -> None:
        self._end(lambda actor: actor.stop.remote())

    def on_failure(self, diagnostic: Any) -> None:
        """The service failed because of its events: the plugin's ``on_failure``
        (else ``stop``) in its actor, then the actor goes."""
        self._end(lambda actor: actor.on_failure.remote(diagnostic))

    def _end(self, last_call: Callable[[Any], Any]) -> None:
        actor, self._actor = self._actor, None
        if actor is None:
            return
        try:
            self._get(last_call(actor))
        finally:
            self._backend._ray().kill(actor, no_restart=True)
            self._backend._forget_actor(actor)
            if self._record is not None:
                self._record.release()


_UNRUN = (False, None, False)  # an answer: it never began (the actor's skip, too)

#: How long a status waits for an actor's stack without a deadline of its own.
STACK_BOUND = 1.0


class _RemoteStack:
    """An actor's answer to ``stack``, waited for by a status's deadline."""

    __slots__ = ("_ray", "_ref", "_where")

    def __init__(self, ray: Any, ref: Any, where: str) -> None:
        self._ray = ray
        self._ref = ref
        self._where = where

    def wait(self, deadline: Optional[float]) -> HandlerStack:
        seconds = remaining(deadline, STACK_BOUND)
        try:
            stack: HandlerStack = self._ray.get(self._ref, timeout=seconds)
            return stack
        except self._ray.exceptions.GetTimeoutError:
            why = ("the actor did not answer within %.3gs (its process may be held "
                   "by native code that keeps the GIL)" % seconds)
        except self._ray.exceptions.RayActorError:
            why = "the actor process is gone"
        except Exception as exc:
            why = "the actor could not answer: %s" % sanitize(exc, 200)
        return HandlerStack(self._where, unavailable=why)


class _Call:
    """One ``handle_many`` call: its reply, and whether it was read."""

    __slots__ = ("ref", "read")

    def __init__(self) -> None:
        self.ref: Any = None
        self.read = False


def _undeliverable(exc: BaseException) -> Undeliverable:
    error = Undeliverable(str(exc))
    error.__cause__ = exc
    return error

