"""A lifecycle listener double: records what it was told, and on which thread."""
from __future__ import annotations

import queue
import threading
from typing import Any, List, NamedTuple, Optional, Tuple

from support.timing import HANG, LONG


class Heard(NamedTuple):
    """One call of a listener."""

    name: str
    from_state: Any
    to_state: Any
    diagnostic: Any
    thread: threading.Thread

    @property
    def move(self) -> Tuple[str, str, str]:
        """``(name, from, to)`` with the states' values, to compare with."""
        return (self.name, self.from_state.value, self.to_state.value)


class Listener:
    """Records every call; with ``hold``, each call waits for that gate first
    (``entered`` is set once a call has begun), so it plays a slow listener."""

    def __init__(self, hold: Optional[threading.Event] = None) -> None:
        self.hold = hold
        self.entered = threading.Event()
        self._heard: "queue.Queue[Heard]" = queue.Queue()

    def __call__(self, name: str, from_state: Any, to_state: Any, diagnostic: Any) -> None:
        self.entered.set()
        if self.hold is not None:
            self.hold.wait(LONG)
        self._heard.put(Heard(name, from_state, to_state, diagnostic,
                              threading.current_thread()))

    def take(self, count: int, timeout: float = HANG) -> List[Heard]:
        """The next ``count`` calls, waiting for each (fails the test on a hang)."""
        return [self._heard.get(timeout=timeout) for _ in range(count)]

    def moves(self, count: int) -> List[Tuple[str, str, str]]:
        return [heard.move for heard in self.take(count)]

    def rest(self) -> List[Tuple[str, str, str]]:
        """Every call not taken yet, without waiting (once the host is closed)."""
        found = []
        while True:
            try:
                found.append(self._heard.get_nowait().move)
            except queue.Empty:
                return found
