"""``python -m plugin_service``: run the demo host."""
import sys

from ._demo import run_demo

if __name__ == "__main__":
    sys.exit(run_demo())
