"""Progress of long steps (download, fit): a start line, a heartbeat, and the time taken."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def progress(what: str, every_seconds: float = 10.0) -> Iterator[None]:
    """Log ``what`` when it starts, every ``every_seconds`` while it runs, and when it ends."""
    log.info("%s ...", what)
    start = time.perf_counter()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(every_seconds):
            log.info("%s: %.0f s so far", what, time.perf_counter() - start)

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    log.info("%s: done in %.1f s", what, time.perf_counter() - start)
