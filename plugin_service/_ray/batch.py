"""Batched calls: many events handed to the actor in one Ray call.

One Ray actor call costs about a millisecond whatever it carries, so the host
hands the actor every event queued (up to ``CALL_MAX``) in one ``handle_many``
call. The actor still runs them one at a time, in order, each as ``handle``
would, and writes each one's outcome into ``Outcomes`` as it ends; the host
learns outcomes there, with ``outcomes(after)`` calls answered by a thread of
their own while the batch runs (so each event's deadline starts about when the
one before it ended, as with one call per event), or from the batch's own reply,
which carries all of them.

Nothing bad in one event costs the others of its batch their outcomes. The
events of a call go as one blob, pickled as Ray would (cloudpickle): if one of
them cannot be pickled, each is sent in a call of its own, so its error is Ray's
own, as without batches; if the actor cannot unpickle the blob, it closes the
batch and answers every event of it ``RESEND``: they go back to the front of the
queue and are sent again one per call. A result or exception that is not a plain
value is pickled by the actor, each on its own (one that cannot be becomes that
event's error).
"""
from __future__ import annotations

import bisect
import pickle
import threading
import time
from typing import Any, List, Optional, Sequence, Tuple

__all__ = ["CALL_MAX", "POLL_S", "SPACING_S", "RESEND", "Outcomes", "pack_events",
           "unpack_events", "portable", "resend", "answer_of"]

CALL_MAX = 256  # events per call: bounds a call's size and an outcomes answer
POLL_S = 1.0  # an ``outcomes`` call waits at most this long, then answers []
# Answers of ``outcomes`` at most this often: each answer costs the actor's process
# a Ray reply (about 0.1-0.3 ms, under the GIL the handler needs), so events that
# end faster share one; an event's end is learned at most this much later.
SPACING_S = 0.002

_PLAIN = frozenset({type(None), bool, int, float, str, bytes})
_VALUE, _PICKLED, _ERROR, _LOST = 0, 1, 2, 3  # how an outcome carries its value
RESEND = 4  # the actor could not unpickle the call: unrun, send each alone
_SKIPPED = (False, None, False)

Outcome = Tuple[int, bool, int, Any, bool]  # seq, ran, how, payload, clean


def _dumps(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:  # a local class, a lambda...: what Ray itself would use
        from ray import cloudpickle

        return bytes(cloudpickle.dumps(value))  # type: ignore[no-untyped-call]


def pack_events(events: Sequence[Any]) -> Optional[bytes]:
    """The events in one blob, pickled as Ray pickles arguments (by value what
    the other process may not import, e.g. classes of ``__main__``); None if one
    of them cannot be pickled."""
    from ray import cloudpickle

    try:
        return bytes(cloudpickle.dumps(list(events)))  # type: ignore[no-untyped-call]
    except Exception:
        return None


def unpack_events(blob: bytes, count: int) -> Optional[List[Any]]:
    """In the actor: the events of a call, or None if they cannot be unpickled."""
    try:
        events = pickle.loads(blob)
    except BaseException:
        return None
    return events if type(events) is list and len(events) == count else None


def resend(seq: int) -> Outcome:
    return seq, False, RESEND, None, False


def portable(seq: int, ran: bool, value: Any, clean: bool, raised: bool) -> Outcome:
    """In the actor: an outcome that pickles whatever the handler gave."""
    if not ran:
        return seq, False, _VALUE, None, False
    if not raised and type(value) in _PLAIN:
        return seq, True, _VALUE, value, clean
    try:
        return seq, True, _ERROR if raised else _PICKLED, (type(value).__name__,
                                                             _dumps(value)), clean
    except Exception as exc:
        why = "cannot pickle the %s %s: %s" % (
            "exception" if raised else "result of type", type(value).__name__, exc)
        return seq, True, _LOST, why, False


def answer_of(outcome: Outcome) -> Tuple[bool, Any, bool]:
    """On the host: ``(ran, value, clean)``, or raise what the handler raised."""
    _seq, ran, how, payload, clean = outcome
    if how == _VALUE or how == RESEND:
        return (ran, payload, clean) if ran else _SKIPPED
    if how == _LOST:
        raise TypeError(payload)
    name, blob = payload
    try:
        value = pickle.loads(blob)
    except Exception as exc:
        raise TypeError("the handler's %s %s could not be rebuilt on the host: %s: %s" % (
            "exception" if how == _ERROR else "result of type", name,
            type(exc).__name__, exc)) from None
    if how == _ERROR:
        raise value
    return True, value, clean


class Outcomes:
    """In the actor: the outcomes of the batch running, as each event ends.

    ``begin``/``add``/``end`` are called by the plugin thread; ``after`` by the
    thread that answers the host's ``outcomes`` calls.
    """

    __slots__ = ("_ready", "_done", "_answered")

    def __init__(self) -> None:
        self._ready = threading.Condition(threading.Lock())  # an outcome was added
        self._done: List[Outcome] = []  # the running batch's, in seq order
        self._answered = 0.0  # when ``after`` last answered (its thread's alone)

    def begin(self) -> List[Outcome]:
        done: List[Outcome] = []
        with self._ready:
            self._done = done
        return done

    def add(self, done: List[Outcome], outcome: Outcome) -> None:
        with self._ready:
            done.append(outcome)
            self._ready.notify()

    def after(self, seq: int, wait: float) -> List[Outcome]:
        """The running batch's outcomes past ``seq``, once there is one (or []
        after ``wait`` seconds), never sooner than ``SPACING_S`` after the last
        answer."""
        pause = self._answered + SPACING_S - time.monotonic()
        if pause > 0.0:
            time.sleep(pause)
        give_up = time.monotonic() + wait
        with self._ready:
            while True:
                done = self._done
                if done and done[-1][0] > seq:
                    self._answered = time.monotonic()
                    return done[bisect.bisect_left(done, (seq + 1,)):]
                left = give_up - time.monotonic()
                if left <= 0.0:
                    return []
                self._ready.wait(left)
