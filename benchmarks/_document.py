"""The JSON document of a run (``--json``): every figure, every sample, the environment."""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from typing import Any, Dict, Sequence

from ._results import ScenarioResult
from ._scenario import Options

__all__ = ["environment", "document", "write_json"]


def environment() -> Dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "switch_interval_s": sys.getswitchinterval(),
    }


def _plain(value: Any) -> Any:
    """JSON without NaN or infinities (strict parsers reject them): those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def document(results: Sequence[ScenarioResult], command: str,
             options: Options) -> Dict[str, Any]:
    """Every figure (and every sample) of a run, as ``--json`` writes it (NaN: None)."""
    verdicts = [v for result in results for v in result.verdicts()]
    return _plain({
        "command": command,
        "quick": options.quick,
        "pin": {None: "per scenario", True: "all (--pin)", False: "none (--no-pin)"}[
            options.pin],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(),
        "targets": [{"target": what, "met": met} for what, met in verdicts],
        "scenarios": [r.to_dict() for r in results],
    })


def write_json(path: str, results: Sequence[ScenarioResult], command: str,
               options: Options) -> None:
    """Write every figure (and every sample) of a run as JSON (see :func:`document`)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(document(results, command, options), fh, indent=2, ensure_ascii=False,
                  allow_nan=False)
        fh.write("\n")
