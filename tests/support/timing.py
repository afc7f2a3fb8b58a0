"""The bounds tests wait with, one value per meaning.

No test sleeps and hopes: every wait ends on an event, and these bounds only end
a wait that would otherwise hang, so a failing run still ends.
"""
from __future__ import annotations

#: A generous bound on a wait within the test's own process that only catches a
#: hang; nothing is expected to take this long. Some tests also check that a call
#: returned within it, telling a bounded call from one that waited for what blocks
#: far longer (a closed gate, a 60 s backoff, eight 1 s ``status()`` calls), so
#: raising it would loosen them.
HANG = 5.0
#: How long a blocking double waits at most where it must outlast every bound a
#: test checks (``HANG``), so a test that should see no waiting fails instead of
#: passing late; still bounded, so a failing run ends.
LONG = 4 * HANG
#: A bound that only catches a hang on a wait that crosses into another process
#: (a child the test started, a Ray actor): starting one takes seconds on a loaded
#: 2-core machine. Tests that run on either backend use it on both.
PROCESS_HANG = 20.0
#: A timeout a gated call always outlives (it blocks on its gate, not on a sleep).
SHORT = 0.05
#: A timeout a call surely starts within, even on a loaded machine, for the tests
#: that need a call to time out while it runs rather than while it waits.
STARTS_WITHIN = 0.5
