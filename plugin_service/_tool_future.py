"""The future of one tool call, as its caller sees it.

``cancel()`` can withdraw a call only while no thread has started it; whether
one has is decided under the tool's lock (``Tool._withdraw``), never here. In a
process forked from the host's, a call still pending is the parent's, and every
wait on it is refused rather than left to hang.
"""
from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures._base import PENDING, RUNNING
from typing import TYPE_CHECKING, Callable, Optional

from ._fork import forked_error
from ._future import GuardedFuture
from ._typevars import ResultT

if TYPE_CHECKING:
    from ._tools import _Call

__all__ = ["ToolFuture"]


class ToolFuture(GuardedFuture[ResultT]):
    """The future of one tool call: ``cancel()`` withdraws a call still waiting for a
    pool thread (True; the tool is never called, the call counts as dropped and its
    slot is freed); once the tool runs it answers False, as for any ``Future``."""

    def __init__(self, call: "_Call") -> None:
        super().__init__()
        self._call: "Optional[_Call]" = call  # dropped once decided: no cycle kept
        self._tool = call.tool.name  # for logs: done-callbacks run after the drop

    def _subject(self) -> Optional[str]:
        name = self._tool
        return "tool %s" % str.__repr__(name) if isinstance(name, str) else None

    def cancel(self) -> bool:
        call = self._call
        if call is None:  # decided: withdrawn (True again) or resolved (False)
            return self.cancelled()
        self._refuse_if_inherited(call)  # the tool's lock may be held forever
        return call.tool._withdraw(call)

    def result(self, timeout: Optional[float] = None) -> ResultT:
        call = self._call
        if call is not None:
            self._refuse_if_inherited(call)
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        call = self._call
        if call is not None:
            self._refuse_if_inherited(call)
        return super().exception(timeout)

    def add_done_callback(self, fn: Callable[[Future[ResultT]], object]) -> None:
        call = self._call
        if call is not None:
            self._refuse_if_inherited(call)
        super().add_done_callback(fn)

    @staticmethod
    def _refuse_if_inherited(call: "_Call") -> None:
        """In a process forked from the host's, a call still pending there is the
        parent's: no thread here will ever decide it."""
        created = call.tool._forked_from
        if created:
            raise forked_error(created, call.tool.name)

    def _mark_running(self) -> None:
        """PENDING -> RUNNING when a thread starts the tool (only for ``running()``:
        whether ``cancel()`` may withdraw is decided under the tool's lock)."""
        with self._condition:
            if self._state == PENDING:
                self._state = RUNNING
