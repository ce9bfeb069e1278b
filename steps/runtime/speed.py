"""Start-up speed-ups of the entrypoints, all in this module, behind one switch.

Each trick has a plain equivalent with the same outputs; ``CLAIM_FREQUENCY_SPEEDUPS=0``
in the environment turns every one of them off (``enabled``). They are on by default.

- ``pause_collector`` / ``resume_collector``: importing scikit-learn, SciPy, pandas,
  matplotlib and skops (and composing the config) creates millions of objects, and the
  cyclic garbage collector's passes over them while they load cost a large share of the
  start-up time. An entrypoint pauses the collector first and resumes it once its
  libraries are loaded: what was loaded is moved out of every later collection
  (``gc.freeze``). Off: the collector runs as usual.
- ``run_ahead``: a step (the local run's prepare) runs in a forked child while the
  caller loads what the next steps need. Off: the step runs in-process, first.
- ``exit_now``: a finished command exits once its exit handlers have run, without the
  interpreter freeing every module's objects (about half a second with the libraries
  above loaded). Off: a normal ``sys.exit``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any, NoReturn, TypeVar

from steps.runtime.interrupt import Interrupted, run_exit_handlers, watch_parent

log = logging.getLogger(__name__)
SWITCH = "CLAIM_FREQUENCY_SPEEDUPS"
OFF_VALUES = frozenset({"0", "false", "no", "off"})
T = TypeVar("T")


def enabled() -> bool:
    """Whether the speed-ups are on: yes, unless ``CLAIM_FREQUENCY_SPEEDUPS`` is ``0`` (or off)."""
    return os.environ.get(SWITCH, "1").strip().lower() not in OFF_VALUES


# ------------------------------------------------------------- the garbage collector


class _Collector:
    """Whether ``pause_collector`` stopped this process's collector (one per process, as is
    the collector itself), so that ``resume_collector`` restarts only what it stopped."""

    paused = False


def pause_collector() -> None:
    """Stop the cyclic garbage collector until ``resume_collector`` (an entrypoint's first call).

    Does nothing with the switch off, or if the collector is already stopped.
    """
    if enabled() and not _Collector.paused and gc.isenabled():
        gc.disable()
        _Collector.paused = True


def resume_collector(freeze: bool = True) -> None:
    """Run the collector again, if ``pause_collector`` stopped it; first freeze what is loaded.

    A command that ends right after its work (``freeze=False``) leaves the objects
    to the collector instead: nothing is kept for good in a process that goes on.
    """
    if _Collector.paused:
        _Collector.paused = False
        if freeze:
            gc.freeze()
        gc.enable()


# ------------------------------------------------------------------ a step run ahead


@contextlib.contextmanager
def run_ahead(task: Callable[..., T], *args: Any) -> Iterator[Callable[[], T]]:
    """Run ``task(*args)`` while the block loads what comes next.

    Yields a function that returns the task's value once the block has ended; the
    task's error is raised as the block ends. Where a fork is safe (the switch on,
    Linux, no other thread running) the task runs in a forked child, so that its
    result is ready when the block's libraries are; otherwise it runs here, before
    the block. Either way it is the same function with the same outputs, and its
    value is used only once it has finished. A block that fails stops the child.
    """
    results: list[T] = []
    name = getattr(task, "__name__", "the step")
    if not enabled() or sys.platform != "linux" or threading.active_count() > 1:
        log.debug("%s runs first, in this process", name)
        results.append(task(*args))
        yield lambda: results[0]
        return
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_send_result, args=(send, task, *args), name=name)
    child.start()
    log.debug("%s runs ahead, in a forked child (pid %s)", name, child.pid)
    send.close()
    try:
        yield lambda: results[0]
    except BaseException:
        if child.is_alive():  # the block failed or was interrupted: stop the task too
            child.terminate()
        child.join()
        receive.close()
        raise
    try:  # the task's own error is raised here; its child has ended or is ending
        results.append(_received(child, receive))
    finally:
        child.join()
        receive.close()


def _send_result(send: Connection, task: Callable[..., Any], *args: Any) -> None:
    """In the child: ``task(*args)``, then its value or its error to the parent."""
    from conf.errors import UserError

    watch_parent()
    try:
        outcome: tuple[bool, Any] = (True, task(*args))
    except BaseException as err:
        if not isinstance(err, UserError | Interrupted):
            err.add_note(traceback.format_exc().rstrip())
        outcome = (False, err)
    # The task is over and cleaned up: a signal from now on just ends this process
    # (the inherited handler would raise ``Interrupted`` outside the task).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    try:
        send.send(outcome)
    except BrokenPipeError:  # the parent stopped waiting (it failed or was interrupted)
        pass
    except Exception as err:  # an error that cannot be pickled: its text still arrives
        send.send((False, RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]} ({err})")))


def _received(child: multiprocessing.process.BaseProcess, receive: Connection) -> Any:
    """The child's value, or its error raised here."""
    try:
        ok, value = receive.recv()
    except EOFError:
        child.join()
        raise RuntimeError(
            f"The process running {child.name} ended without a result (exit code {child.exitcode})."
        ) from None
    if not ok:
        raise value
    return value


# ----------------------------------------------------------------------------- exit


def exit_now(code: int) -> NoReturn:
    """Exit with ``code`` once the exit handlers have run, without the interpreter's teardown.

    Outputs are already published, and nothing of ours needs the modules' objects
    freed. The ``atexit`` handlers (logging, worker pools) still run and the standard
    streams are flushed. With the switch off, another thread still running, or no
    handler hook in the interpreter, this is a plain ``sys.exit``.
    """
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    if not enabled() or any(not t.daemon for t in others) or not run_exit_handlers():
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
