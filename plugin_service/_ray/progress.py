"""What an actor began, in a record that outlives the actor's process.

When an actor dies, Ray fails every call still outstanding, also calls that ran
and returned but whose reply had not reached the host. So after a crash the host
reads this record to know, for each event it handed over and got no reply for,
whether it began: one that never began may go to the fresh actor; one that began
is never run again (at most once). The record is a file mapped shared by the host
and the actor: a ring of ``slots`` pairs of int64, slot ``seq % slots`` holding
the seq of the event that last began there and of the one that last ended there,
written by the actor around each handler call and kept in the page cache when
its process dies. Per-seq slots, not high-water marks: an event the actor skipped
(its batch closed) reads as not begun even when a later seq began after it (a
retry, a batch sent after the skip). The ring is as large as the window of
events outstanding at once, so a slot is reused only by a seq sent after every
event it could be asked about was answered; a slot holding a newer seq reads as
unknown. It needs the actor on the host's node: elsewhere the host knows nothing
of what began (see ``Record.began``).
"""
from __future__ import annotations

import mmap
import os
import struct
import tempfile
from typing import Any, Optional, Tuple

__all__ = ["Marker", "Record"]

_SLOT = struct.Struct("<qq")  # begun, ended: the seqs that last used the slot
_INT64 = struct.Struct("<q")
_ENDED = 8
_SHM = "/dev/shm"
_MAX_SLOTS = 1 << 16  # 1 MiB: past it, the oldest of a huge window read as unknown


def _node_id(ray: Any) -> Optional[str]:
    try:
        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # pragma: no cover - a Ray without it
        return None


class Record:
    """The host's side: the file, made per life, and what it says after a crash."""

    __slots__ = ("_map", "path", "node", "tracked", "slots")

    def __init__(self, ray: Any, slots: int = 1) -> None:
        self.slots = max(1, min(int(slots), _MAX_SLOTS))
        where = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
        fd, self.path = tempfile.mkstemp(prefix="plugin_service-progress-", dir=where)
        try:
            os.write(fd, _SLOT.pack(-1, -1) * self.slots)
            # The mapping keeps the file; it is freed with this object.
            self._map = mmap.mmap(fd, _SLOT.size * self.slots)
        finally:
            os.close(fd)
        self.node = _node_id(ray)
        self.tracked = False  # the actor maps it too (it runs on this node)

    def ready(self, tracked: bool) -> None:
        """The actor answered its start: it maps the file (``tracked``) or not. The
        name goes now; the file lives while one of the two has it open."""
        self.tracked = bool(tracked)
        self._unlink()

    def where(self) -> Tuple[Optional[str], str, int]:
        """What the actor needs to map the record: ``(node, path, slots)``."""
        return self.node, self.path, self.slots

    def began(self, seq: int) -> Optional[Tuple[bool, bool]]:
        """After the actor died: ``(began, ended)`` for event ``seq``, or None if
        nothing is known (the actor ran on another node, or its slot was reused
        by a newer seq)."""
        if not self.tracked:
            return None
        begun, ended = _SLOT.unpack_from(self._map, (seq % self.slots) * _SLOT.size)
        if begun > seq:
            return None
        return begun == seq, ended == seq

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

    __slots__ = ("_map", "_slots")

    def __init__(self, mapped: mmap.mmap, slots: int) -> None:
        self._map = mapped
        self._slots = slots

    @classmethod
    def open(cls, ray: Any, where: Optional[Tuple[Optional[str], str, int]]
             ) -> Optional["Marker"]:
        if where is None:
            return None
        node, path, slots = where
        if node is None or node != _node_id(ray):
            return None  # another node: the path names nothing of the host's
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return None
        try:
            return cls(mmap.mmap(fd, _SLOT.size * slots), slots)
        finally:
            os.close(fd)  # the mapping keeps the file

    def begin(self, seq: int) -> None:
        _INT64.pack_into(self._map, (seq % self._slots) * _SLOT.size, seq)

    def end(self, seq: int) -> None:
        _INT64.pack_into(self._map, (seq % self._slots) * _SLOT.size + _ENDED, seq)
