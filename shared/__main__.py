"""``python -m shared`` runs the command line."""

import sys

from shared.cli import main

sys.exit(main())
