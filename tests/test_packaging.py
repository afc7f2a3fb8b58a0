"""Packaging (issue 17): the build system, the licence, the metadata, the lower
bounds of every dependency and their pins for CI's minimum-versions job, and one
source for the version.

The files are read from the checkout; what pip installed is read through
``importlib.metadata``, so a stale or hand-made install shows up as a failure.
"""
import ast
import configparser
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, List

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import plugin_service

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest >= 7 depends on tomli below Python 3.11
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / ".ci" / "constraints-min.txt"
#: The first setuptools with PEP 660 editable installs and ``editable_mode``.
SETUPTOOLS_MIN = Version("64")


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    return parser


def _lines(value: str) -> List[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def _declared() -> Dict[str, List[Requirement]]:
    """``install_requires`` (under ``""``) and each extra, as parsed requirements."""
    cfg = _setup_cfg()
    groups = {"": _lines(cfg["options"]["install_requires"])}
    groups.update({extra: _lines(value)
                   for extra, value in cfg["options.extras_require"].items()})
    return {name: [Requirement(line) for line in lines] for name, lines in groups.items()}


def _lower_bound(requirement: Requirement) -> Version:
    bounds = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    assert len(bounds) == 1, "%s: declare exactly one '>=' lower bound" % requirement
    return bounds[0]


def _python_minimum() -> Version:
    spec = _setup_cfg()["options"]["python_requires"].strip()
    assert spec.startswith(">="), spec
    return Version(spec[2:])


# ------------------------------------------------------------------ build system
def test_pyproject_declares_the_setuptools_build_backend() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    build = pyproject["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    (setuptools,) = [Requirement(r) for r in build["requires"]
                     if Requirement(r).name == "setuptools"]
    assert _lower_bound(setuptools) >= SETUPTOOLS_MIN


def test_metadata_stays_in_setup_cfg_with_setup_py_a_shim() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "project" not in pyproject  # one place for the metadata: setup.cfg
    assert _setup_cfg()["metadata"]["name"] == "plugin_service"
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert len(calls) == 1 and not calls[0].args and not calls[0].keywords  # setup()


# ---------------------------------------------------------------------- licence
def test_license_file_is_the_mit_licence_and_is_listed() -> None:
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 plugin_service contributors" in text
    assert "Permission is hereby granted, free of charge" in text
    meta = _setup_cfg()["metadata"]
    assert meta["license"] == "MIT"
    assert _lines(meta["license_files"]) == ["LICENSE"]
    assert "LICENSE" in (metadata.metadata("plugin_service").get_all("License-File") or [])


# --------------------------------------------------------------------- metadata
def test_installed_metadata_names_licence_typing_status_and_audience() -> None:
    classifiers = set(metadata.metadata("plugin_service").get_all("Classifier") or [])
    assert {"License :: OSI Approved :: MIT License", "Typing :: Typed",
            "Intended Audience :: Developers", "Programming Language :: Python :: 3 :: Only",
            } <= classifiers
    for prefix in ("Development Status :: ", "Operating System :: ", "Topic :: "):
        assert any(c.startswith(prefix) for c in classifiers), prefix


def test_python_classifiers_run_from_python_requires_without_a_gap() -> None:
    classifiers = metadata.metadata("plugin_service").get_all("Classifier") or []
    minors = sorted(int(m.group(1)) for c in classifiers
                    for m in [re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c)]
                    if m)
    assert minors and minors[0] == _python_minimum().minor
    assert minors == list(range(minors[0], minors[-1] + 1))
    assert sys.version_info.minor <= minors[-1]  # the Python running this is listed
    assert metadata.metadata("plugin_service")["Requires-Python"] == ">=%s" % _python_minimum()


def test_installed_metadata_names_the_author_and_the_project_urls() -> None:
    meta = metadata.metadata("plugin_service")
    assert meta["Author"] == "plugin_service contributors"
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    assert {"Source", "Documentation", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


# ------------------------------------------------------------- lower bounds
def test_every_dependency_and_extra_declares_a_lower_bound() -> None:
    declared = _declared()
    assert set(declared) == {"", "test", "metrics", "bench", "lint", "ray", "websocket", "otel"}
    for group, requirements in declared.items():
        assert requirements, group
        for requirement in requirements:
            _lower_bound(requirement)  # exactly one ">=" each


def test_runtime_dependencies_stay_attrs_tenacity_loguru() -> None:
    assert sorted(r.name for r in _declared()[""]) == ["attrs", "loguru", "tenacity"]


def test_the_constraints_file_pins_exactly_the_declared_minimums() -> None:
    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    minimums = {canonicalize_name(r.name): _lower_bound(r)
                for requirements in _declared().values() for r in requirements}
    assert pins == minimums


def test_the_known_too_old_versions_are_excluded() -> None:
    # attrs 21.2 has no ``attrs`` namespace (import fails); prometheus_client
    # before 0.20 returns None from start_http_server (serve_metrics: TypeError).
    bounds = {r.name: _lower_bound(r) for rs in _declared().values() for r in rs}
    assert bounds["attrs"] > Version("21.2")
    assert bounds["prometheus_client"] > Version("0.19")


# ----------------------------------------------------------------------- version
def test_version_has_one_source_the_package() -> None:
    assert _setup_cfg()["metadata"]["version"].strip() == "attr: plugin_service.__version__"
    tree = ast.parse((REPO / "plugin_service" / "__init__.py").read_text(encoding="utf-8"))
    literals = [node.value.value for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and [getattr(t, "id", None) for t in node.targets] == ["__version__"]]
    # A literal at module level: setuptools reads it from the AST, never imports.
    assert literals == [plugin_service.__version__]
    Version(plugin_service.__version__)  # a valid PEP 440 version


def test_installed_metadata_version_is_the_package_version() -> None:
    assert metadata.version("plugin_service") == plugin_service.__version__


def test_setuptools_reads_the_version_without_importing_the_package() -> None:
    pytest.importorskip("setuptools")
    # Importing plugin_service at build time would need attrs, tenacity and loguru
    # in the build environment: this child has none of them importable, and checks
    # that plugin_service was never executed.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('attrs', 'loguru', 'tenacity'):\n"
        "            raise ImportError('imported at build time: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "try:\n"
        "    from setuptools.config.setupcfg import read_configuration\n"
        "except ImportError:\n"
        "    from setuptools.config import read_configuration\n"
        "version = read_configuration('setup.cfg')['metadata']['version']\n"
        "assert 'plugin_service' not in sys.modules, 'plugin_service was imported'\n"
        "print(version)\n"
    )
    child = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True,
                           text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == plugin_service.__version__


# ------------------------------------------------- the install type checkers see
def test_the_installed_package_lies_on_a_path_that_static_tools_search(tmp_path: Path) -> None:
    # mypy and other type checkers look for packages along sys.path and never run
    # import hooks: setuptools' default editable install (a meta-path finder) is
    # invisible to them. Run from outside the checkout, in isolated mode (neither
    # the current directory nor PYTHONPATH on sys.path).
    code = (
        "import os, sys\n"
        "print([p for p in sys.path if os.path.isfile(\n"
        "    os.path.join(p, 'plugin_service', 'py.typed'))])\n"
    )
    child = subprocess.run([sys.executable, "-I", "-c", code], cwd=str(tmp_path),
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    found = ast.literal_eval(child.stdout.strip())
    assert found, "plugin_service is not on sys.path without an import hook"
    assert not any(Path(p).resolve() == REPO for p in found)  # the package, not the checkout


def _readme_command(after: str) -> str:
    lines = (REPO / "README.rst").read_text(encoding="utf-8").splitlines()
    start = lines.index(after)
    return next(line.strip() for line in lines[start + 1:] if line.strip())


def test_ci_runs_the_readme_test_command_word_for_word() -> None:
    command = _readme_command("Install the test extra and run the tests::")
    assert "editable_mode=strict" in command  # the development install type checkers see
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in [line.strip() for line in ci]
