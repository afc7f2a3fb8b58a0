"""``python -m benchmarks [SCENARIO ...] [--quick] [--only NAME[,NAME]] [--json FILE]
[--baseline FILE.json] [--plot FILE.png]``: run every scenario (or the ones named),
print one table; with ``--baseline``, compare its same-run ratios with a saved run."""
import importlib.util
import sys
from typing import List

from . import (
    dispatch,
    expiry,
    fanin,
    isolation,
    ray_backend,
    roundtrip,
    scale,
    timeouts,
    tools,
    tracing,
    websocket,
)
from ._cli import Builder, main

#: Every scenario's builder, in the order the table lists them (the issue's order).
SCENARIOS: List[Builder] = [
    dispatch.build,
    roundtrip.build,
    timeouts.build,
    tools.build,
    isolation.build,
    scale.build,
    fanin.build,
    expiry.build,
]

#: The Ray backend (8) runs when the ``ray`` extra is installed.
RAY_MISSING = "ray is not importable: the ray_backend scenario is skipped (pip install '.[ray]')"
if importlib.util.find_spec("ray") is not None:
    SCENARIOS += ray_backend.builders()

#: The WebSocket source (9, 10) runs when websockets (the ``websocket`` extra) is.
WEBSOCKETS_MISSING = ("websockets is not importable: the websocket scenarios are skipped "
                      "(pip install '.[websocket]')")
if importlib.util.find_spec("websockets") is not None:
    SCENARIOS += [websocket.build, websocket.build_latency]

#: Tracing's cost runs when OpenTelemetry's SDK (the ``otel`` extra) is installed.
OTEL_MISSING = ("opentelemetry.sdk is not importable: the tracing scenario is skipped "
                "(pip install '.[otel]')")
if importlib.util.find_spec("opentelemetry") is not None \
        and importlib.util.find_spec("opentelemetry.sdk") is not None:
    SCENARIOS.append(tracing.build)

if __name__ == "__main__":
    if tracing.build not in SCENARIOS:
        print(OTEL_MISSING, file=sys.stderr)
    if ray_backend.build not in SCENARIOS:
        print(RAY_MISSING, file=sys.stderr)
    if websocket.build not in SCENARIOS:
        print(WEBSOCKETS_MISSING, file=sys.stderr)
    sys.exit(main(SCENARIOS))
