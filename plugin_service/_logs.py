"""How the library logs.

The library logs through loguru and never configures it: it adds no sink, and
its import disables ``plugin_service`` unless the application already chose
(``disable_unless_chosen``). Plugin tracebacks are logged at DEBUG as redacted
text in the message (``log_traceback``), never as loguru's ``exception``: a sink
with ``diagnose=True`` would print every frame's local values, and loguru's
formatter the exception's own text, both unredacted.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Tuple

from loguru import logger

from ._guarded import traceback_text

if TYPE_CHECKING:  # pragma: no cover
    from loguru import Logger

__all__ = ["disable_unless_chosen", "log_traceback", "LazyTraceback"]

_PACKAGE = "plugin_service"


def _choices(name: str) -> Optional[List[Tuple[str, bool]]]:
    """What the application has enabled or disabled at or under ``name`` (loguru's
    entries are ``("name.", status)``), or None if loguru's state is unreadable.

    loguru has no public reader of ``enable``/``disable`` (its maintainer:
    Delgan/loguru#868); ``_core.activation_list`` has held them, unchanged,
    since loguru 0.4.0. Read defensively: any other shape means "unknown".
    """
    entries = getattr(getattr(logger, "_core", None), "activation_list", None)
    if not isinstance(entries, list):
        return None
    dotted = name + "."
    chosen = []
    for entry in entries:
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], bool)):
            return None
        if entry[0].startswith(dotted):
            chosen.append((entry[0], entry[1]))
    return chosen


def disable_unless_chosen(name: str = _PACKAGE) -> None:
    """``logger.disable(name)``, as a library should at import, unless the
    application already enabled or disabled ``name`` (then its choice stands).

    ``enable``/``disable`` of a submodule of ``name`` made before the import
    survive it too: ``disable(name)`` drops them, so they are made again after.
    ``logger.enable("")`` (everything) leaves no trace in loguru, so it does not
    count: a library's own ``disable`` wins over it (loguru's documented order).
    """
    chosen = _choices(name)
    if chosen is not None and any(entry == name + "." for entry, _ in chosen):
        return
    logger.disable(name)
    for entry, status in sorted(chosen or (), key=lambda item: item[0].count(".")):
        (logger.enable if status else logger.disable)(entry[:-1])


class LazyTraceback:
    """The text of a traceback record, made only when loguru calls it: with
    ``opt(lazy=True)`` that is only once a sink takes DEBUG records of ours, so a
    failure storm with logging off formats no traceback."""

    __slots__ = ("head", "exc")

    def __init__(self, head: str, exc: BaseException) -> None:
        self.head = head
        self.exc = exc

    def __call__(self) -> str:
        return "%s\n%s" % (self.head, traceback_text(self.exc))


def log_traceback(log: "Logger", head: str, exc: BaseException) -> None:
    """Log ``head`` (ours, or already described and redacted) and ``exc``'s
    redacted traceback at DEBUG on ``log``, as the caller's record. Formatting
    reads the plugin's objects: call it outside every lock."""
    log.opt(lazy=True, depth=1).debug("{}", LazyTraceback(head, exc))
