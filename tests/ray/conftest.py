"""The Ray backend's own tests: every test here runs on Ray, so ``host`` and
``gates`` are the Ray ones of the parent conftest."""
from __future__ import annotations

import pytest
from support.backends import BackendGates

from plugin_service import PluginHost


@pytest.fixture
def gates(ray_gates: BackendGates) -> BackendGates:
    return ray_gates


@pytest.fixture
def host(ray_host: PluginHost) -> PluginHost:
    return ray_host
