"""The command's own output channels: stdout and stderr written one whole line at a
time, and the logging it sets up for itself (only this entry point configures
logging; the library never does)."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record


class _Stream:
    """A text stream written one whole line at a time under a lock, so lines from
    worker threads, the status thread and loguru never interleave. A reader that
    went away (closed pipe) is ignored: the run must still drain and exit."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.lock = threading.Lock()
        self.broken = False

    def write_line(self, text: str) -> None:
        with self.lock:
            self.write_locked(text)

    def write_locked(self, text: str) -> None:
        try:
            self._stream.write(text if text.endswith("\n") else text + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            self.broken = True


# Shown in the message itself ("service 'greeter': ..."), so not again as extras.
_IN_MESSAGE = ("service", "tool")


def _log_format(record: Record) -> str:
    extra = "".join(f"{key}={{extra[{key}]}} " for key, value in record["extra"].items()
                    if value is not None and key not in _IN_MESSAGE)
    return ("{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name} | " + extra
            + "{message}\n{exception}")


def _configure_logging(level: str | int | None, stderr: _Stream) -> None:
    """Quiet by default; with ``level``, plugin_service logs go to stderr."""
    logger.remove()
    if level is not None:
        logger.add(stderr.write_line, level=level, format=_log_format, colorize=False)
        logger.enable("plugin_service")


@contextlib.contextmanager
def _stray_prints_off_stdout(active: bool, verbose: bool) -> Iterator[None]:
    """While ``active``, ``print()`` to ``sys.stdout`` goes to stderr (``verbose``) or
    nowhere; our outcome lines keep the real stdout.

    Ray's driver prints notices such as "(raylet) A worker died..." to whatever
    ``sys.stdout`` is, and stdout is the run's JSON-lines channel. The crash those
    notices report is an outcome line and a status entry already.
    """
    if not active:
        yield
        return
    saved = sys.stdout
    sink = sys.stderr if verbose else open(os.devnull, "w", encoding="utf-8")
    sys.stdout = sink
    try:
        yield
    finally:
        sys.stdout = saved
        if sink is not sys.stderr:
            sink.close()


def _detach_stdout() -> None:
    """Point stdout at /dev/null once its reader is gone, so the final flush at
    interpreter exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
