"""The public API as a user's type checker sees it.

``mypy --strict`` runs once, as a user runs it, on two programs in
``tests/typecheck``: ``user_program.py`` (the API as users write it, with
``assert_type`` pinning what is inferred) must pass with no error, and every
call in ``misuse.py`` marked ``# E: <code>`` must be refused with that code, and
nothing else. mypy runs from the checkout's root, so it checks this checkout's
``plugin_service`` whatever copy is installed.
"""
from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "typecheck"
USER_PROGRAM = PROGRAMS / "user_program.py"
MISUSE = PROGRAMS / "misuse.py"
#: mypy's line for one error: ``path:line: error: message  [code]``.
_ERROR = re.compile(r"^(?P<path>.+?):(?P<line>\d+): error: (?P<message>.*)  \[(?P<code>[a-z-]+)\]$")
_EXPECTED = re.compile(r"#\s*E:\s*(?P<code>[a-z-]+)\s*$")


def _expected_errors(path: Path) -> Set[Tuple[int, str]]:
    """``(line, code)`` for every line of ``path`` marked ``# E: <code>``."""
    found = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _EXPECTED.search(line)
        if match:
            found.add((number, match["code"]))
    return found


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, List[Tuple[int, str, str]]]:
    """Every error of one ``mypy --strict`` run on both programs, by file name."""
    cache = tmp_path_factory.mktemp("mypy_cache")
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache),
               "--no-error-summary", "--hide-error-context", "--no-pretty",
               "--show-error-codes", str(USER_PROGRAM), str(MISUSE)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=50)
    if "No module named mypy" in done.stderr:
        pytest.fail("mypy is part of the test extra: pip install -e '.[test]'")
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 2: mypy itself failed
    errors: Dict[str, List[Tuple[int, str, str]]] = {}
    for line in done.stdout.splitlines():
        match = _ERROR.match(line)
        if match:
            name = Path(match["path"]).name
            errors.setdefault(name, []).append((int(match["line"]), match["code"],
                                                match["message"]))
        else:
            assert ": note: " in line, "unexpected mypy output: %r" % line
    return errors


def test_user_program_passes_mypy_strict(mypy_errors):
    assert mypy_errors.get(USER_PROGRAM.name, []) == []


def test_mypy_reports_errors_only_in_the_misuse_program(mypy_errors):
    # Errors in plugin_service itself (checked as imported) would show here too.
    assert set(mypy_errors) <= {MISUSE.name}, mypy_errors


def test_misuse_is_refused_exactly_where_marked(mypy_errors):
    expected = _expected_errors(MISUSE)
    found = {(line, code) for line, code, _ in mypy_errors.get(MISUSE.name, [])}
    assert found == expected, mypy_errors.get(MISUSE.name)


def test_misuse_marks_the_calls_the_issue_names():
    """The expectations cannot quietly go: the issue's two calls stay marked."""
    lines = MISUSE.read_text().splitlines()
    marked = {lines[number - 1].split("#")[0].strip() for number, _ in _expected_errors(MISUSE)}
    assert {'host.add_service("x", 42)', 'svc.submit("not an event")',
            'host.submit("greeter", "not an event")'} <= marked


def test_misuse_messages_name_what_was_expected(mypy_errors):
    messages = {line: message for line, _, message in mypy_errors.get(MISUSE.name, [])}
    lines = MISUSE.read_text().splitlines()
    by_call = {lines[number - 1].split("#")[0].strip(): text for number, text in messages.items()}
    assert '"IngressEvent"' in by_call['svc.submit("not an event")']
    assert "ServicePluginLike" in by_call['host.add_service("x", 42)']


def test_user_program_runs():
    """What the program asserts about types holds at run time too."""
    program = runpy.run_path(str(USER_PROGRAM), run_name="user_program")
    assert program["run"]() == {"greeting": "hello, world", "text": "ABC", "totals": [1, 3, 6]}
