"""``python -m hqctf``: the same command line as the ``hqctf`` script."""

import sys

from .cli import main

sys.exit(main())
