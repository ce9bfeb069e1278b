"""``python -m pipelines.executor``: see ``pipelines.executor.run``."""

import sys

from pipelines.executor.run import main

sys.exit(main())
