"""``python -m executor``: see ``executor.run``."""

import sys

from executor.run import main

if __name__ == "__main__":
    sys.exit(main())
