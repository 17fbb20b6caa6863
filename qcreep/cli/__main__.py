"""``python -m qcreep.cli``: the same as the ``qcreep`` command."""

import sys

from qcreep.cli import main

sys.exit(main())
