"""Joining an existing Ray cluster: its token authentication, and a typed error
when the join fails.

Ray 2.52 and later start clusters (``ray start``, a local ``ray.init``) with token
authentication on by default, but a driver joining one by address only sends a
token when ``RAY_AUTH_MODE=token`` is set before Ray reads its configuration:
without it every call is refused ("Authentication token is missing or
incorrect") and ``ray.init`` gives up after about 20 s with a bare
``ConnectionError``. A token is never turned on silently from
``~/.ray/auth_token`` alone (a left-over of a local cluster): with token mode on,
a cluster that runs without authentication starts no actor.
"""
from __future__ import annotations

import os
import sys
from typing import Optional

from .. import errors

__all__ = ["is_join_failure", "join_error", "prepare_auth"]

AUTH_MODE = "RAY_AUTH_MODE"
TOKEN = "RAY_AUTH_TOKEN"
TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"


def _token_given() -> bool:
    """Whether this process was given a token explicitly: in ``RAY_AUTH_TOKEN``,
    or in the file ``RAY_AUTH_TOKEN_PATH`` names (not empty)."""
    if os.environ.get(TOKEN, "").strip():
        return True
    path = os.environ.get(TOKEN_PATH, "").strip()
    if not path:
        return False
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as stream:
            return bool(stream.read(4096).strip())
    except OSError:
        return False


def prepare_auth(address: Optional[str]) -> Optional[str]:
    """Before Ray joins ``address``: with a token given and ``RAY_AUTH_MODE``
    unset, set ``RAY_AUTH_MODE=token`` for this process (and the processes it
    starts), and refresh Ray's configuration if Ray was imported already. Returns
    the authentication mode the join uses (``RAY_AUTH_MODE``'s value, or None)."""
    if address is None or address == "auto":  # Ray itself finds a local token
        return os.environ.get(AUTH_MODE)
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        return os.environ.get(AUTH_MODE)  # joined already: the backend uses that
    if os.environ.get(AUTH_MODE) is None and _token_given():
        os.environ[AUTH_MODE] = "token"
        if "ray" in sys.modules:
            _refresh_ray_config()
    return os.environ.get(AUTH_MODE)


def _refresh_ray_config() -> None:
    # What Ray's own token setup does after changing the mode (Ray >= 2.52); an
    # older Ray has no token authentication, and nothing to refresh.
    import ray._raylet as raylet

    initialize = getattr(getattr(raylet, "Config", None), "initialize", None)
    if initialize is not None:
        initialize("")


def join_error(address: Optional[str], mode: Optional[str],
               exc: BaseException) -> errors.BackendUnavailable:
    """The typed error for a ``ray.init`` that could not join ``address``; it names
    what to set, and never the token."""
    where = "the Ray cluster at %s" % address if address else "a local Ray instance"
    if mode == "token":
        hint = ("token authentication was on (RAY_AUTH_MODE=token): check that the "
                "token in RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or "
                "~/.ray/auth_token is the cluster's")
    else:
        hint = ("if the cluster uses token authentication (the default of `ray start` "
                "since Ray 2.52), give this process its token in RAY_AUTH_TOKEN or in "
                "a file named by RAY_AUTH_TOKEN_PATH (RAY_AUTH_MODE=token is then set "
                "for you), or set RAY_AUTH_MODE=token to use ~/.ray/auth_token; set "
                "either before the first service is added")
    return errors.BackendUnavailable(
        "could not join %s (%s: %s); %s" % (where, type(exc).__name__, _first_line(exc), hint),
        address=address)


def _first_line(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # pragma: no cover - a hostile __str__
        text = ""
    return (text.strip().splitlines() or [""])[0][:300]


def is_join_failure(exc: BaseException) -> bool:
    """A ``ray.init`` failure that means the cluster could not be joined."""
    if isinstance(exc, ConnectionError):
        return True
    return any(cls.__name__ == "AuthenticationError" for cls in type(exc).__mro__)


