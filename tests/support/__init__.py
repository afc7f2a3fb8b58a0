"""What the plugin_service tests share, one concept per module.

``tests/`` is on ``sys.path`` (``pythonpath`` in setup.cfg's ``[tool:pytest]``), so
test modules import ``support.<module>``; a process a test starts (gunicorn, a Ray
worker) gets ``tests`` on its ``PYTHONPATH`` and imports the very same names.
Fixtures live in ``tests/conftest.py``; nothing in this package imports pytest, so
a child process loads it cheaply.

* ``timing``: the bounds that only catch a hang, and the timeouts tests share.
* ``states``: short names for the lifecycle states.
* ``checks``: the accounting invariants, and a future's outcome.
* ``doubles``: service-plugin doubles and the event they take.
* ``tools``: tool doubles.
* ``hostile_errors``: exceptions that fight being described.
* ``contract`` and ``backends``: the plugins the contract tests run on either
  backend (importable by Ray workers), and the test-side helpers for them.
* ``cli``: running ``plugin-service`` in a child process.
* ``gunicorn_apps``, ``gunicorn_conf``, ``gunicorn_misuse``: what a real gunicorn
  serves in ``test_gunicorn``.
"""
