"""``python -m legw recipe ...``: see :mod:`legw.cli`."""

import sys

from legw.cli import main

sys.exit(main())
