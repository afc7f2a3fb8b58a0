"""Benchmarks for plugin_service, each measured side by side with its baselines.

Run every scenario and print one table::

    python -m benchmarks [SCENARIO ...] [--quick] [--only NAME[,NAME]] [--json FILE]
                         [--baseline FILE.json] [--plot FILE.png] [--pin | --no-pin]

or one scenario alone, e.g. ``python -m benchmarks.dispatch``. Every scenario runs
its variants interleaved (A B C, A B C, ...): one warm-up round, then at least five
measured rounds (a heavy scenario may run three, and says why). It reports each
variant's median with min..max, the ratio of medians to a baseline measured in the
same process, and the issue's target for each figure with whether it is met. The
machine is shared and noisy, so those same-run ratios are the figures that count,
not the absolute ones. The single-operation latency scenarios (``roundtrip``,
``tools``, ``isolation``) run on one CPU, because a thread hand-off across CPUs is
bimodal here (~18 or ~47 µs per round trip, at random per repetition); ``--pin``
puts every scenario on one CPU, ``--no-pin`` none.

Scenarios (one module each, in the table's order): ``dispatch`` (1, throughput from
one producer), ``roundtrip`` (2, submit + result latency), ``timeouts`` (3, how late
timeouts arrive), ``tools`` (4, tool call overhead), ``isolation`` (5, services vs
tools under saturation), ``scale`` (6, 1,000 idle services), ``fanin`` (7, 8
producers into 1 and 100 services), ``ray_backend`` (8, the Ray backend against
bare Ray actor calls; only with the ``ray`` extra). ``_harness`` is what they import:
it gathers ``_scenario`` (variants, metrics, ratios, targets), ``_results`` (what a
run found), ``_rounds`` (the interleaved rounds), ``_table``, ``_document`` (the JSON)
and ``_cli`` (the command line). ``_common`` holds the run's error, bounded waits and
running one scenario alone; ``_workloads`` the plugin and tool doubles, host set-up,
the design floor's consumer loops and the pykka actors; ``_plot`` draws the figures
(matplotlib, from the ``bench`` extra, imported only for ``--plot``); ``_baseline``
compares a run's ratios with one saved by ``--json`` (``--baseline``; saved runs are
in ``baselines/``).
"""
