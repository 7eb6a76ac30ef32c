"""``python -m gradcheck``: the same command as the ``gradcheck`` console script."""

import sys

from gradcheck.cli import main

sys.exit(main())
