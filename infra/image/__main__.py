"""``python -m infra.image``: see ``infra.image``."""

import sys

from infra.image.cli import main

if __name__ == "__main__":
    sys.exit(main())
