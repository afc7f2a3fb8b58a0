"""``python -m benchmarks [--quick] [--only NAME[,NAME]] [--json FILE] [--plot FILE.png]``:
run every scenario (or the ones named), print one table."""
import sys
from typing import List

from . import dispatch, fanin, isolation, roundtrip, scale, timeouts, tools
from ._harness import Builder, main

#: Every scenario's builder, in the order the table lists them (the issue's order).
SCENARIOS: List[Builder] = [
    dispatch.build,
    roundtrip.build,
    timeouts.build,
    tools.build,
    isolation.build,
    scale.build,
    fanin.build,
]

if __name__ == "__main__":
    sys.exit(main(SCENARIOS))
