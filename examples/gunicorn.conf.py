"""gunicorn config for gunicorn_app.py: a plugin host per worker, drained on exit.

    cd examples && gunicorn -c gunicorn.conf.py gunicorn_app:app
"""
from gunicorn_app import hosts

bind = "127.0.0.1:8000"
workers = 2
preload_app = True      # import the app once in the master; hosts are made per worker
graceful_timeout = 30   # worker_exit drains within this, less WorkerHost's margin

post_fork = hosts.post_fork                # builds this worker's host
post_worker_init = hosts.post_worker_init  # notes when SIGTERM/SIGQUIT arrives
worker_exit = hosts.worker_exit            # closes the host, draining queued events
