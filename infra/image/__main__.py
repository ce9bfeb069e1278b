"""``python -m infra.image``: see ``infra.image``."""

import sys

from infra.image.cli import main

sys.exit(main())
