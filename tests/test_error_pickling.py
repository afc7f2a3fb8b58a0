"""Every typed error survives pickle, copy and deepcopy whole: its type, message,
args and data. Errors cross processes (the Ray backend, multiprocessing hosts) and
are copied by callers, so a lossy or raising ``__reduce__`` is a defect."""
import copy
import datetime as _dt
import pickle

import pytest

from plugin_service import errors

pytestmark = pytest.mark.timeout(30)

# One instance of every public error, built with its own data.
SAMPLES = {
    "PluginServiceError": errors.PluginServiceError("boom", service="s"),
    "LifecycleError": errors.LifecycleError("not now", service="s", state="ready"),
    "ServiceNotFound": errors.ServiceNotFound("s"),
    "QueueFull": errors.QueueFull(8, service="s"),
    "InvalidEvent": errors.InvalidEvent("kind must be a str", service="s"),
    "BatchRejected": errors.BatchRejected(["id-1", errors.QueueFull(1, service="s")],
                                          service="s"),
    "ServiceUnavailable": errors.ServiceUnavailable("starting", service="s",
                                                    state="starting"),
    "ServiceStopped": errors.ServiceStopped("stopping", service="s", state="stopping"),
    "ServiceFailed": errors.ServiceFailed("failed", service="s", state="failed",
                                          services=["s", "t"]),
    "DispatchError": errors.DispatchError("no", service="s"),
    "DispatchTimeout": errors.DispatchTimeout("late", service="s", timeout=0.5),
    "DispatchFailed": errors.DispatchFailed("raised", service="s"),
    "EventExpired": errors.EventExpired(
        "expired", service="s", correlation_id="c-1",
        deadline=_dt.datetime(2026, 12, 2, 17, 0, tzinfo=_dt.timezone.utc), late=0.25,
        expired_by="max_queue_age"),
    "PluginCrashed": errors.PluginCrashed("died", service="s"),
    "ToolError": errors.ToolError("tool", service="t"),
    "ToolNotFound": errors.ToolNotFound("t"),
    "ToolFailed": errors.ToolFailed("raised", service="t"),
    "ToolTimeout": errors.ToolTimeout("late", service="t", timeout=1.5),
    "ToolBusy": errors.ToolBusy(3, service="t"),
    "HostClosed": errors.HostClosed("closed"),
    "PluginLoadError": errors.PluginLoadError("ep", "no module named ep"),
    "HostForked": errors.HostForked(100, 101, service="s"),
    "SourceUnavailable": errors.SourceUnavailable("not open", source="ws", state="backoff",
                                                  service="s"),
    "SourceNotFound": errors.SourceNotFound("ws"),
    "ToolUnavailable": errors.ToolUnavailable(
        "t", _dt.datetime(2026, 12, 2, 17, 0, tzinfo=_dt.timezone.utc)),
    "RedriveRefused": errors.RedriveRefused("re-driven already", service="s", letter_id=7),
    "BackendUnavailable": errors.BackendUnavailable("cannot join", address="127.0.0.1:6379"),
}


def test_every_public_error_has_a_sample():
    assert sorted(SAMPLES) == sorted(errors.__all__)


def _same(again, made):
    assert type(again) is type(made)
    assert (str(again), again.args, repr(again)) == (str(made), made.args, repr(made))
    assert set(vars(again)) == set(vars(made))
    for name, value in vars(made).items():
        if name in ("results", "rejected", "accepted"):  # errors inside: compare as text
            assert repr(vars(again)[name]) == repr(value), name
        else:
            assert vars(again)[name] == value, name


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_an_error_survives_pickle_and_copy_whole(name, how):
    made = SAMPLES[name]
    again = {"pickle": lambda e: pickle.loads(pickle.dumps(e)),
             "copy": copy.copy, "deepcopy": copy.deepcopy}[how](made)
    _same(again, made)


def test_a_raised_error_pickles_with_its_data():
    try:
        raise errors.QueueFull(4, service="svc")
    except errors.QueueFull as raised:
        again = pickle.loads(pickle.dumps(raised))
    assert (again.capacity, again.service, str(again)) == (
        4, "svc", "ingress queue of 'svc' is full (capacity 4)")
