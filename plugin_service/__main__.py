"""``python -m plugin_service``: the ``plugin-service`` command; with no arguments, the demo."""
import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
