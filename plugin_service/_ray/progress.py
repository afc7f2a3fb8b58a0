"""What an actor began, in a record that outlives the actor's process.

When an actor dies, Ray fails every call still outstanding, also calls that ran
and returned but whose reply had not reached the host. So after a crash the host
reads this record to know, for each event it handed over and got no reply for,
whether it began: one that never began may go to the fresh actor; one that began
is never run again (at most once). The record is a 16-byte file, mapped shared by
the host and the actor (two int64: the seq of the newest event begun, the seq of
the newest one that ended), written by the actor around each handler call and
kept in the page cache when its process dies. It needs the actor on the host's
node: elsewhere the host knows nothing of what began (see ``Record.began``).
"""
from __future__ import annotations

import mmap
import os
import struct
import tempfile
from typing import Any, Optional, Tuple

__all__ = ["Marker", "Record"]

_LAYOUT = struct.Struct("<qq")  # begun, ended
_BEGUN, _ENDED = 0, 8
_SHM = "/dev/shm"


def _node_id(ray: Any) -> Optional[str]:
    try:
        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # pragma: no cover - a Ray without it
        return None


class Record:
    """The host's side: the file, made per life, and what it says after a crash."""

    __slots__ = ("_map", "path", "node", "tracked")

    def __init__(self, ray: Any) -> None:
        where = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
        fd, self.path = tempfile.mkstemp(prefix="plugin_service-progress-", dir=where)
        try:
            os.write(fd, _LAYOUT.pack(-1, -1))
            # The mapping keeps the file; it is freed with this object.
            self._map = mmap.mmap(fd, _LAYOUT.size)
        finally:
            os.close(fd)
        self.node = _node_id(ray)
        self.tracked = False  # the actor maps it too (it runs on this node)

    def ready(self, tracked: bool) -> None:
        """The actor answered its start: it maps the file (``tracked``) or not. The
        name goes now; the file lives while one of the two has it open."""
        self.tracked = bool(tracked)
        self._unlink()

    def began(self, seq: int) -> Optional[Tuple[bool, bool]]:
        """After the actor died: ``(began, ended)`` for event ``seq``, or None if
        nothing is known (the actor ran on another node)."""
        if not self.tracked:
            return None
        begun, ended = _LAYOUT.unpack_from(self._map, 0)
        return seq <= begun, seq <= ended

    def release(self) -> None:
        """The life ended: the name goes (if the actor never answered its start);
        the mapping stays readable until this object goes."""
        self._unlink()

    def _unlink(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


class Marker:
    """The actor's side: marks each event begun and ended; a few hundred
    nanoseconds a call. None of it when the file is not on this node."""

    __slots__ = ("_map",)

    def __init__(self, mapped: mmap.mmap) -> None:
        self._map = mapped

    @classmethod
    def open(cls, ray: Any, where: Optional[Tuple[Optional[str], str]]) -> Optional["Marker"]:
        if where is None:
            return None
        node, path = where
        if node is None or node != _node_id(ray):
            return None  # another node: the path names nothing of the host's
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return None
        try:
            return cls(mmap.mmap(fd, _LAYOUT.size))
        finally:
            os.close(fd)  # the mapping keeps the file

    def begin(self, seq: int) -> None:
        struct.pack_into("<q", self._map, _BEGUN, seq)

    def end(self, seq: int) -> None:
        struct.pack_into("<q", self._map, _ENDED, seq)
