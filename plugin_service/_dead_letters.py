"""The host's bounded list of dead letters."""
from __future__ import annotations

import collections
import threading
from typing import Any, List, Optional

from ._diagnostics import DeadLetter

__all__ = ["DeadLetterBox"]


class DeadLetterBox:
    """Keeps the newest ``limit`` dead letters; older ones are let go.

    ``sink``: the host's ``_letters.sink.SinkDispatcher``, None without a
    ``dead_letter_sink`` (read by every dead letter, set once by the host).
    """

    def __init__(self, limit: int = 1000) -> None:
        if limit < 1:
            raise ValueError("dead_letter_limit must be >= 1")
        self._lock = threading.Lock()
        self._letters: "collections.deque[DeadLetter]" = collections.deque(maxlen=limit)
        self.sink: Optional[Any] = None

    def add(self, letter: DeadLetter) -> None:
        with self._lock:
            self._letters.append(letter)

    def snapshot(self) -> List[DeadLetter]:
        with self._lock:
            return list(self._letters)
