"""Re-drive: dead letters submitted again, each reported on its own future, and
the host's part that holds its dead-letter sink (``HostLetters``)."""
from __future__ import annotations

import collections
import datetime as _dt
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple

import attrs

from .. import errors
from .._diagnostics import DeadLetter
from .._events import IngressEvent
from .._fork import forked_error
from .._future import DispatchFuture
from .._guarded import describe
from .sink import DeadLetterSinkStatus, SinkDispatcher
from .sqlite import SQLiteDeadLetterSink
from .stored import StoredDeadLetter, letter_key

if TYPE_CHECKING:  # pragma: no cover
    from .._dead_letters import DeadLetterBox

__all__ = ["Letters", "HostRedrive"]

_UTC = _dt.timezone.utc
#: How many re-driven letters a host remembers when it has no sink to mark them in.
REMEMBERED = 10000


class _Memory:
    """Re-drive marks kept in the host (no sink that can keep them): the newest
    ``REMEMBERED`` letter keys. Same claim/release calls as the SQLite sink's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: "collections.OrderedDict[Tuple[str, str, int], float]" = \
            collections.OrderedDict()

    def claim_redrive(self, letter: DeadLetter, *, force: bool = False
                      ) -> Tuple[bool, Optional[float]]:
        key = letter_key(letter)
        with self._lock:
            previous = self._marks.get(key)
            if previous is not None and not force:
                return False, previous
            self._marks[key] = _dt.datetime.now(_UTC).timestamp()
            self._marks.move_to_end(key)
            while len(self._marks) > REMEMBERED:
                self._marks.popitem(last=False)
            return True, previous

    def release_redrive(self, letter: DeadLetter, previous: Optional[float]) -> None:
        key = letter_key(letter)
        with self._lock:
            if previous is None:
                self._marks.pop(key, None)
            else:
                self._marks[key] = previous


class Letters:
    """What a host keeps for its dead letters beyond the box: the sink's
    dispatcher (None without a sink) and where re-drives are marked."""

    def __init__(self, box: "DeadLetterBox", sink: Any, backlog: int, host_id: int) -> None:
        self.dispatcher: Optional[SinkDispatcher] = None
        if sink is not None:
            self.dispatcher = SinkDispatcher(sink, backlog,
                                             "plugin_service-dead-letters-%d" % host_id)
        box.sink = self.dispatcher
        self.sink = sink
        self.memory = _Memory()

    def status(self) -> Optional[DeadLetterSinkStatus]:
        return None if self.dispatcher is None else self.dispatcher.status()

    def close(self, deadline: Optional[float]) -> None:
        if self.dispatcher is not None:
            self.dispatcher.close(deadline)

    def marks_for(self, letter: DeadLetter, files: Dict[str, Any]) -> Any:
        """Where ``letter``'s re-drive is marked: its own file for a stored letter,
        the host's sink if it can mark, else the host's memory."""
        sink = self.sink
        if isinstance(letter, StoredDeadLetter):
            if isinstance(sink, SQLiteDeadLetterSink) and sink.path == letter.db:
                return sink
            if letter.db not in files:
                files[letter.db] = SQLiteDeadLetterSink(letter.db)
            return files[letter.db]
        if callable(getattr(sink, "claim_redrive", None)) and \
                callable(getattr(sink, "release_redrive", None)):
            return sink
        return self.memory


def _failed(event: Any, error: BaseException) -> DispatchFuture[Any]:
    """An already-failed future: how a letter that was not submitted is reported."""
    future: DispatchFuture[Any] = DispatchFuture(event)
    future.set_exception(error)
    return future


def _again(letter: Any) -> IngressEvent:
    """The letter's event for its next attempt; ``RedriveRefused`` if there is none."""
    service = getattr(letter, "service", None)
    letter_id = letter.id if isinstance(letter, StoredDeadLetter) else None
    if not isinstance(letter, DeadLetter):
        raise errors.RedriveRefused("not a DeadLetter: %s" % type(letter).__name__,
                                    service=None)
    if isinstance(letter, StoredDeadLetter) and not letter.payload_kept:
        raise errors.RedriveRefused(
            "its raw payload was not stored (%s); the redacted copy is never sent"
            % (letter.payload_missing or "keep_payloads is off"),
            service=service, letter_id=letter_id)
    event = letter.event
    try:
        again: IngressEvent = attrs.evolve(event, attempt=event.attempt + 1)
        return again
    except Exception as exc:  # an event subclass that cannot be copied
        raise errors.RedriveRefused("its event cannot be rebuilt: %s" % describe(exc),
                                    service=service, letter_id=letter_id) from None


class HostRedrive:
    """The host's ``redrive`` (a part of ``PluginHost``)."""

    if TYPE_CHECKING:  # pragma: no cover - set by PluginHost.__init__
        _letters: Letters
        _forked: bool
        _pid: int

        def submit(self, name: str, event: IngressEvent, *, block: bool = False,
                   timeout: Optional[float] = None) -> DispatchFuture[Any]: ...

    def redrive(self, letters: Iterable[DeadLetter], *, service: Optional[str] = None,
                force: bool = False) -> List[DispatchFuture[Any]]:
        """Submit each letter's event again, to its own service or to ``service``:
        a copy with ``attempt`` + 1 and the same correlation id, validated again
        like any submit (never blocking on a full queue). Takes letters of
        :meth:`dead_letters` and of ``SQLiteDeadLetterSink.letters()`` alike.

        Returns one future per letter, in order. A letter that was not submitted
        raises nothing here: its future is already failed with the typed error,
        ``RedriveRefused`` (re-driven before, unless ``force``; stored without its
        raw payload; not a letter) or what ``submit`` raised (``InvalidEvent``,
        ``QueueFull``, ``ServiceNotFound``, ``ServiceStopped``...). Each submitted
        letter is marked re-driven (in its file for a stored letter, in the
        host's sink if it marks, else in the host), atomically, before its
        submit; a refused submit takes the mark back. ``HostForked`` in a fork.
        """
        if self._forked:
            raise forked_error(self._pid)
        files: Dict[str, Any] = {}
        try:
            return [self._redrive_one(letter, service, force, files) for letter in letters]
        finally:
            for sink in files.values():
                sink.close()

    def _redrive_one(self, letter: Any, service: Optional[str], force: bool,
                     files: Dict[str, Any]) -> DispatchFuture[Any]:
        shown = getattr(letter, "event", letter)
        try:
            event = _again(letter)
        except errors.RedriveRefused as exc:
            return _failed(shown, exc)
        target = letter.service if service is None else service
        try:
            marks = self._letters.marks_for(letter, files)
            claimed, previous = marks.claim_redrive(letter, force=force)
        except Exception as exc:  # the file cannot be read: not re-driven
            return _failed(event, errors.RedriveRefused(
                "its re-drive cannot be marked: %s" % describe(exc), service=target,
                letter_id=getattr(letter, "id", None)))
        if not claimed:
            when = _dt.datetime.fromtimestamp(previous or 0.0, _UTC).isoformat()
            return _failed(event, errors.RedriveRefused(
                "re-driven already at %s (force=True re-drives it again)" % when,
                service=target, letter_id=getattr(letter, "id", None)))
        try:
            return self.submit(target, event)
        except errors.PluginServiceError as exc:
            try:
                marks.release_redrive(letter, previous)
            except Exception:  # pragma: no cover - the file went away meanwhile
                pass
            return _failed(event, exc)

