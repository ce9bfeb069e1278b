"""``python -m executor``: see ``executor.run``."""

import sys

from executor.run import main

sys.exit(main())
