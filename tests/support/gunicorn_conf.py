"""gunicorn config for tests/support/gunicorn_apps.py: the WorkerHost hooks, and the
release of the held handlers just before the drain."""
from support.gunicorn_apps import hosts, release

post_fork = hosts.post_fork
post_worker_init = hosts.post_worker_init


def worker_exit(server, worker):
    release.set()  # from here on the worker's handlers run: only the drain can
    hosts.worker_exit(server, worker)
