"""The plugins a command line names: ``module:attr`` specs and entry-point groups,
loaded into the host."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from .._config import ServiceConfig
from .._discovery import DEFAULT_GROUP
from .._guarded import describe
from .._host import PluginHost
from .._kinds import classify
from .parser import _UsageError
from .streams import _Stream


def _import_spec(spec: str) -> tuple[str, str, Any]:
    """``(name, "service" | "tool", plugin)`` for ``module:attr`` or ``name=module:attr``."""
    name: str | None = None
    target = spec
    head, sep, rest = spec.partition("=")
    if sep and ":" not in head:
        name, target = head.strip(), rest
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise _UsageError(f"plugin spec {spec!r} is not module:attr or name=module:attr")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # importing a user's module may raise anything
        raise _UsageError(f"cannot load plugin {spec!r}: {describe(exc)}") from None
    try:
        kind, plugin = classify(obj)
    except TypeError as exc:
        raise _UsageError(f"plugin {spec!r}: {exc}") from None
    return name or attr.split(".")[-1].lower(), kind.role, plugin


def _add_plugins(host: PluginHost, args: argparse.Namespace, config: ServiceConfig,
                 stderr: _Stream) -> None:
    if args.specs and "" not in sys.path and os.getcwd() not in sys.path:
        # As with ``python -m`` (and uvicorn, gunicorn): modules of the current
        # directory can be named, even from the ``plugin-service`` script.
        sys.path.insert(0, os.getcwd())
    for spec in args.specs:
        name, what, plugin = _import_spec(spec)
        try:
            if what == "service":
                host.add_service(name, plugin, config)
            else:
                host.add_tool(name, plugin, timeout=args.dispatch_timeout)
        except (TypeError, ValueError) as exc:
            raise _UsageError(f"plugin {spec!r}: {exc}") from None
    groups = args.group or ([] if args.specs else [DEFAULT_GROUP])
    for group in groups:
        report = host.load_entry_points(group, config=config)
        for name, error in report.errors.items():
            stderr.write_line(f"plugin-service: warning: entry point {name!r} of group "
                              f"{group!r} not loaded: {error.reason}")
    status = host.status()
    if not status.services and not status.tools:
        searched = " / ".join(groups or [DEFAULT_GROUP])
        raise _UsageError("no plugins to host: name them as module:attr or install "
                          f"plugins in the entry-point group {searched}")
