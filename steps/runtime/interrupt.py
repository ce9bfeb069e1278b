"""How a process ends when SIGTERM or SIGINT stops it: cleanly, with one line.

A signal becomes an ``Interrupted`` exception in the main thread, so ``finally``
blocks (the staging folders of ``steps.runtime.io.staged_outputs``) run. The caller then
stops its worker processes, removes what staging folders are left, prints one
line, ``interrupted``, and exits with 128 + the signal number (130 or 143)
(``exit_interrupted``).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_watching = False
_received: int | None = None  # the signal ``interrupt`` raised for, in this process
_blocks = 0  # ``signals_raise`` blocks open in the main thread


class Interrupted(BaseException):
    """The run received SIGINT or SIGTERM."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    def __reduce__(self) -> tuple[type[Interrupted], tuple[int]]:
        return (Interrupted, (self.signum,))  # crosses a process boundary intact

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


def _raise(signum: int, frame: FrameType | None) -> None:
    interrupt(signum)


def interrupt(signum: int) -> NoReturn:
    """Raise ``Interrupted``; later signals are ignored while the first one is cleaned up."""
    global _received
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    _received = signum
    raise Interrupted(signum)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise ``Interrupted`` (main thread only).

    When the block ends by ``Interrupted`` the signals stay ignored: the process is
    ending, and a second Ctrl-C must not break its cleanup with a traceback. A
    signal whose ``Interrupted`` came out as another error (raised inside a
    module's initialisation, or wrapped by a library) still ends the block as
    ``Interrupted``; one raised where Python cannot raise is delivered again
    (``_redeliver``), and if it is lost all the same, outputs are not published
    (``raise_if_interrupted``) and the block still ends as ``Interrupted``.
    """
    global _received, _blocks
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received = None
    _blocks += 1
    previous = {sig: signal.signal(sig, _raise) for sig in SIGNALS}
    previous_hook, sys.unraisablehook = sys.unraisablehook, _redeliver(sys.unraisablehook)
    try:
        yield
        raise_if_interrupted()  # a signal whose exception was lost on the way
    except Interrupted:
        previous = dict.fromkeys(SIGNALS, signal.SIG_IGN)
        raise
    except BaseException as err:
        if _received is None:
            raise
        previous = dict.fromkeys(SIGNALS, signal.SIG_IGN)
        raise Interrupted(_received) from err
    finally:
        _blocks -= 1
        _received = None
        sys.unraisablehook = previous_hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def raise_if_interrupted() -> None:
    """Raise ``Interrupted`` if a signal arrived in this ``signals_raise`` block.

    Called before outputs are published: a signal whose exception Python lost
    (see ``_redeliver``) still keeps a run from publishing anything.
    """
    if _blocks and _received is not None:
        raise Interrupted(_received)


def _redeliver(hook: Callable[[Any], object]) -> Callable[[Any], object]:
    """``hook``, except for an ``Interrupted`` that Python could not raise: it comes again.

    A signal handler runs wherever the main thread is, sometimes in a callback
    whose exceptions Python only reports (the import system's module-lock weakref
    callback, a ``__del__``). That ``Interrupted`` would be printed and lost; the
    signal is sent again a moment later instead, when the main thread is back in
    ordinary code.
    """

    def redeliver(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Interrupted):
            hook(unraisable)
            return
        for sig in SIGNALS:
            signal.signal(sig, _raise)
        resend = threading.Timer(0.01, os.kill, (os.getpid(), unraisable.exc_value.signum))
        resend.daemon = True
        resend.start()

    return redeliver


def stop_workers(timeout: float = 5.0) -> None:
    """Terminate every child process of this one (SIGTERM, then SIGKILL after ``timeout``)."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    deadline = time.monotonic() + timeout
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join(1.0)


def remove_staging(roots: Iterable[Path]) -> None:
    """Remove every ``.staging-*`` folder under ``roots``."""
    for root in roots:
        root = Path(root)
        if root.is_dir():
            for stage in sorted(root.rglob(".staging-*"), reverse=True):
                shutil.rmtree(stage, ignore_errors=True)


def exit_interrupted(err: Interrupted, roots: Iterable[Path] = ()) -> NoReturn:
    """Stop workers, remove staging folders, run the exit handlers, print ``interrupted``, exit.

    ``os._exit`` skips waiting for threads still training (local tuning runs trials in
    threads): everything worth keeping is already published. The ``atexit`` handlers
    run first all the same: they release what the process holds beyond its own life,
    such as the named semaphores of a multirun's worker pool, which the pool's resource
    tracker would otherwise report as leaked, on stderr, once this process has gone.
    """
    stop_workers()
    remove_staging(roots)
    if not run_exit_handlers():
        logging.shutdown()
    print("interrupted", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(err.exit_code)


def run_exit_handlers() -> bool:
    """Run the ``atexit`` handlers now (each once); False where the interpreter has no hook.

    Before an ``os._exit``: logging is flushed, and multiprocessing's finalizers unlink
    the semaphores and stop the pools it registered.
    """
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_handlers is None:
        return False
    run_handlers()
    return True


def watch_parent(interval: float = 0.5, grace: float = 5.0) -> None:
    """In a worker process: when the parent dies, interrupt this process, then end it.

    A worker orphaned by a parent that could not stop it (``kill -9``) gets SIGTERM
    (its staging folders are cleaned up) and exits ``grace`` seconds later at the latest.
    """
    global _watching
    if _watching:
        return
    _watching = True
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os._exit(143)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
