"""A short demo host: the main job of ``python -m plugin_service``."""
from __future__ import annotations

import json
import sys
from typing import TextIO

from . import errors
from ._config import ServiceConfig
from ._events import IngressEvent
from ._examples import WordCounter, WordFrequency
from ._host import PluginHost

EXAMPLES_GROUP = "plugin_service.examples"


def run_demo(out: TextIO = sys.stdout) -> int:
    """Run the demo host: load the example plugins, feed events, call the tool,
    print each outcome and the final status diagnostics."""
    lines = ["the quick brown fox", "jumps over the fox", "please fail here", "the lazy dog"]
    with PluginHost() as host:
        config = ServiceConfig(queue_size=8, fail_after=None)  # a bad line fails alone
        report = host.load_entry_points(EXAMPLES_GROUP, config=config)
        if "words" not in report.loaded:  # running from a source tree, not installed
            host.add_service("words", WordCounter, config)
            host.add_tool("frequency", WordFrequency())
        print("loaded: %s" % ", ".join(s.name for s in host.services()), file=out)
        words = host.service("words")
        host.start_all(timeout=5)
        futures = [words.submit(IngressEvent("text", "demo", line, kind="line"))
                   for line in lines]
        try:
            words.submit(IngressEvent("text", "demo", 42, kind="line"))
        except errors.InvalidEvent as exc:
            print("rejected: %s" % exc.reason, file=out)
        for line, future in zip(lines, futures):
            try:
                print("%-22r -> %s words" % (line, future.result(timeout=5)), file=out)
            except errors.PluginServiceError as exc:
                print("%-22r -> %s: %s" % (line, type(exc).__name__, exc), file=out)
        print("frequency tool -> %s" % host.call_tool("frequency", " ".join(lines), timeout=5),
              file=out)
    print(json.dumps(host.status().to_dict(), indent=2), file=out)
    return 0
