"""The host's tool pool: at most ``workers`` daemon threads, started lazily.

Modelled on CPython's ``concurrent.futures.thread`` (a ``SimpleQueue`` of work, an
idle semaphore deciding when to start a thread, a weak reference that lets the
workers go when the pool is collected), with the one difference it exists for:
``ThreadPoolExecutor`` registers its threads with ``threading._register_atexit``,
so the interpreter joins them at exit and one tool stuck in a socket read keeps
the process alive forever. These threads are daemon threads nobody joins at exit;
the host joins them in ``close()``, bounded, and leaves a stuck one behind.

A unit of work is any object with a ``run()`` that never raises (``Tool`` makes
sure of it); there are no per-item futures here, the tool resolves its own.
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
import weakref
from typing import Any, Callable, List, Optional

__all__ = ["ToolPool"]

_monotonic = time.monotonic

# Set on each pool thread to its pool's queue, so a call can tell that it comes
# from one of its own pool's threads (a tool calling a tool).
_pool_thread = threading.local()


class _PoolThread(threading.Thread):
    """A pool thread: runs queued items until told to stop (``None``).

    ``busy`` is True while it runs an item, so ``close()`` can tell a thread
    stuck in a tool (joined no longer than the calls' bound) from one on its way
    out (joined until close's own deadline).
    """

    busy = False

    def __init__(self, name: str, pool: "ToolPool", work: "queue.SimpleQueue[Any]",
                 idle: threading.Semaphore) -> None:
        super().__init__(name=name, daemon=True)

        def collected(_: Any) -> None:  # a host dropped without close(): let go
            work.put(None)

        self._pool_ref = weakref.ref(pool, collected)
        self._work_queue = work
        self._idle = idle

    def run(self) -> None:
        work, idle = self._work_queue, self._idle
        _pool_thread.queue = work
        while True:
            item = work.get()
            if item is None:
                work.put(None)  # wakes the next thread: one sentinel stops them all
                return
            self.busy = True
            item.run()
            self.busy = False
            del item
            idle.release()  # one more thread about to wait in get()


class ToolPool:
    """Runs ``submit``-ted items first in, first out on at most ``workers`` threads.

    Threads are named ``<prefix>_<n>``, started only when no idle one can take an
    item, and are daemon threads the interpreter does not wait for at exit.
    """

    def __init__(self, workers: int, prefix: str) -> None:
        self._workers = workers
        self._prefix = prefix
        self._work: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()  # guards _threads and _shut
        self._threads: List[_PoolThread] = []
        self._shut = False
        self._numbers = itertools.count()

    def submit(self, item: Any) -> bool:
        """Queue ``item``; False (and not queued) once :meth:`shutdown` was called."""
        if self._shut:
            return False
        self._work.put(item)
        if self._idle.acquire(timeout=0):  # an idle thread will take it
            return True
        with self._lock:
            if not self._shut and len(self._threads) < self._workers:
                thread = _PoolThread("%s_%d" % (self._prefix, next(self._numbers)),
                                     self, self._work, self._idle)
                thread.start()
                self._threads.append(thread)
        return True

    def on_pool_thread(self) -> bool:
        """True on one of this pool's threads (a tool calling a tool)."""
        return getattr(_pool_thread, "queue", None) is self._work

    @property
    def threads(self) -> List[threading.Thread]:
        with self._lock:
            return list(self._threads)

    def shutdown(self, calls_until: Callable[[], Optional[float]],
                 close_until: Optional[float]) -> None:
        """Take no more items; join the threads once they have run what was queued.

        A thread still inside an item at monotonic ``calls_until()`` (None: no
        bound; read again while waiting, as a second signal may bring it forward)
        is left behind; one that is not is joined until ``close_until``. The
        calling thread, if it is one of them, is never joined.
        """
        with self._lock:
            if not self._shut:
                self._shut = True
                self._work.put(None)
            threads = list(self._threads)
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                _join_until(thread, calls_until)
                if thread.is_alive() and not thread.busy:
                    _join(thread, close_until)


def _join(thread: threading.Thread, until: Optional[float]) -> None:
    thread.join(None if until is None else max(0.0, until - _monotonic()))


#: While close waits for a running tool, how often it reads its bound again.
_REREAD_BOUND = 0.2


def _join_until(thread: threading.Thread, until: Callable[[], Optional[float]]) -> None:
    """Join ``thread`` until the bound ``until()`` gives, read again every
    ``_REREAD_BOUND`` seconds: only while a close waits on a stuck tool."""
    while thread.is_alive():
        bound = until()
        left = None if bound is None else bound - _monotonic()
        if left is not None and left <= 0:
            return
        thread.join(_REREAD_BOUND if left is None else min(left, _REREAD_BOUND))
