"""``python -m sidu_bench``: see :mod:`sidu_bench.cli`."""

import sys

from sidu_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
