"""``python -m legw recipe ...``: see :mod:`legw.cli`."""

import sys

from legw.cli import main

if __name__ == "__main__":
  sys.exit(main())
