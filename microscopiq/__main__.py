"""``python -m microscopiq``: the ``microscopiq`` command."""

import sys

from .cli import main

sys.exit(main())
