"""``python -m sidu_bench``: see :mod:`sidu_bench.cli`."""

import sys

from sidu_bench.cli import main

sys.exit(main())
