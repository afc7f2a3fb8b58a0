"""The code's shape, held by reading it: imports run one way, the service core
knows nothing of any backend, one writer of a service's state, sizes a person
can hold."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "plugin_service"
CORE = PACKAGE / "_service"


def _modules(root: Path) -> List[Path]:
    return sorted(root.rglob("*.py"))


def _imported(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, as an absolute dotted name."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            for alias in node.names:
                yield "%s.%s" % (module, alias.name)


def _names(path: Path) -> Iterator[Tuple[int, str]]:
    """Every identifier and string constant in ``path``'s code, with its line."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node.lineno, node.name
        elif isinstance(node, ast.alias):
            yield getattr(node, "lineno", 0), node.name


def test_the_service_core_imports_no_backend_nor_the_host() -> None:
    forbidden = ("plugin_service._ray", "plugin_service._backend", "plugin_service._host",
                 "plugin_service._cli", "ray")
    found = [(path.name, module) for path in _modules(CORE) for module in _imported(path)
             if module.startswith(forbidden) and not module.startswith("plugin_service._service")]
    assert found == []


def test_the_service_core_names_no_ray_no_crash_no_pipeline() -> None:
    words = re.compile(r"(?i:(^|_)(ray|pipeline|pipelined|may_send|recall_sent)($|_))"
                       r"|PluginCrashed|^Ray|Ray[A-Z_]")
    found = [(path.name, line, name) for path in _modules(CORE)
             for line, name in _names(path) if words.search(name)]
    assert found == []


def test_the_ray_package_builds_on_the_core_not_on_the_host_or_cli() -> None:
    forbidden = ("plugin_service._host", "plugin_service._cli")
    found = [(path.name, module) for path in _modules(PACKAGE / "_ray")
             for module in _imported(path) if module.startswith(forbidden)]
    assert found == []


def test_only_the_transition_assigns_a_services_state() -> None:
    writers = []
    for path in _modules(CORE):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef):
                continue
            for node in ast.walk(func):
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
                for target in targets:
                    if isinstance(target, ast.Attribute) and target.attr == "_state":
                        writers.append((path.name, func.name))
    assert sorted(set(writers)) == [("control.py", "_transition"), ("core.py", "__init__")]


def _code_lines(source: List[str], node: ast.AST) -> int:
    body = getattr(node, "body", [])
    doc = set()
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        doc = set(range(body[0].lineno, body[0].end_lineno + 1))
    count = 0
    for number in range(node.lineno, node.end_lineno + 1):  # type: ignore[attr-defined]
        text = source[number - 1].strip()
        if text and not text.startswith("#") and number not in doc:
            count += 1
    return count


@pytest.mark.parametrize("path", _modules(PACKAGE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_sizes_a_person_can_hold(path: Path) -> None:
    """No module or class over 400 lines, no function over 60 code lines."""
    text = path.read_text()
    source = text.splitlines()
    assert len(source) <= 400
    too_big = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 400:
            too_big.append(node.name)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                and _code_lines(source, node) > 60:
            too_big.append(node.name)
    assert too_big == []
