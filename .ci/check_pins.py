"""Fail unless every package a constraints file pins is installed at exactly that version.

``python .ci/check_pins.py .ci/constraints-min.txt``: run by CI's minimum-versions job
after the install, so a pin pip could not honour (or a package left out) shows up.
"""
import sys
from importlib import metadata


def main(path: str) -> int:
    wrong = []
    with open(path, encoding="utf-8") as pins:
        for line in pins:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, pinned = line.split("==")
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                wrong.append("%s: not installed, %s pinned" % (name, pinned))
                continue
            if installed != pinned:
                wrong.append("%s: %s installed, %s pinned" % (name, installed, pinned))
    for message in wrong:
        print("ci: " + message, file=sys.stderr)
    if not wrong:
        print("ci: Python %s, every pinned dependency at its declared minimum"
              % sys.version.split()[0])
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
