"""How the library logs, and the one bridge it offers to the host.

The library logs through loguru and never configures it: it adds no sink, and
its import disables ``plugin_service`` unless the application already chose
(``disable_unless_chosen``). Plugin tracebacks are logged at DEBUG as redacted
text in the message (``log_traceback``), never as loguru's ``exception``: a sink
with ``diagnose=True`` would print every frame's local values, and loguru's
formatter the exception's own text, both unredacted. ``log_to_stdlib`` is the
host's one-line route of those records into the standard ``logging`` module.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, List, Optional, Tuple, Union

from loguru import logger

from ._guarded import traceback_text

if TYPE_CHECKING:  # pragma: no cover
    from loguru import Logger, Message

__all__ = ["disable_unless_chosen", "log_to_stdlib", "log_traceback", "LazyTraceback"]

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
    _set_keeping_modules(name, False, chosen)


def _set_keeping_modules(name: str, status: bool,
                         chosen: Optional[List[Tuple[str, bool]]]) -> None:
    """``logger.enable(name)`` or ``disable``, keeping the choices ``chosen`` made
    for its modules (loguru's own call drops them), shallowest first."""
    (logger.enable if status else logger.disable)(name)
    modules = [item for item in chosen or () if item[0] != name + "."]
    for entry, entry_status in sorted(modules, key=lambda item: item[0].count(".")):
        (logger.enable if entry_status else logger.disable)(entry[:-1])


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


class _ToStdlib:
    """A loguru sink: each record to ``logging.getLogger(record["name"])``."""

    def __call__(self, message: "Message") -> None:
        record = message.record
        target = logging.getLogger(record["name"] or _PACKAGE)
        level = record["level"].no  # loguru's numbers are logging's (TRACE is 5)
        if not target.isEnabledFor(level):
            return
        entry = target.makeRecord(
            target.name, level, record["file"].path, record["line"], record["message"],
            (), None, record["function"])
        for key, value in record["extra"].items():  # service, correlation_id, tool
            if key not in entry.__dict__:
                entry.__dict__[key] = value
        target.handle(entry)


def log_to_stdlib(level: Union[str, int, None] = None) -> int:
    """Route the library's records into the standard ``logging`` module and turn
    them on: each goes to ``logging.getLogger(record["name"])`` (all under
    ``"plugin_service"``) at its own level, with the loguru record's file, line
    and function, and its ``extra`` (``service``, ``correlation_id``, ``tool``) as
    attributes of the ``LogRecord``. Tracebacks are in the message, redacted;
    ``exc_info`` is never set.

    ``level`` is the lowest loguru level forwarded (a name or number); by default
    the effective level of the ``"plugin_service"`` logger at this call, so
    configure ``logging`` first. Returns the loguru handler id
    (``logger.remove(id)`` undoes the route). What the host enabled or disabled
    for a module of ``plugin_service`` stays so. The host calls this; the library
    never does. Loguru's own handlers stay as they are.
    """
    if level is None:
        level = logging.getLogger(_PACKAGE).getEffectiveLevel()
    handler_id = logger.add(_ToStdlib(), level=level, format="{message}", filter=_PACKAGE,
                            colorize=False)
    _set_keeping_modules(_PACKAGE, True, _choices(_PACKAGE))
    return handler_id
