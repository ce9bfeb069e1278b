"""``steps.runtime.interrupt.signals_raise``: a signal always ends the block as ``Interrupted``."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import weakref
from pathlib import Path

import pytest

from steps.runtime.interrupt import Interrupted, signals_raise


def _wait_for_signal(signum: int = signal.SIGINT) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(5)  # the handler raises long before


def test_a_signal_wrapped_in_another_error_still_ends_as_interrupted() -> None:
    """As when the signal arrives inside a module's initialisation, which reports another error."""
    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(Interrupted) as caught, signals_raise():
            try:
                _wait_for_signal()
            except BaseException as err:
                raise SystemError("initialization of _module raised unreported exception") from err
        assert caught.value.exit_code == 130
        # The process is ending: later signals are ignored, so they cannot break its cleanup.
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_other_errors_pass_and_the_handlers_come_back() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ValueError), signals_raise():
        raise ValueError("not a signal")
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_signal_handled_where_python_cannot_raise_comes_again(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """As in the import system's module-lock callback: Python would only print the error."""

    class Module:
        pass

    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(Interrupted) as caught, signals_raise():
            module = Module()
            lock = weakref.ref(module, lambda _: _wait_for_signal(signal.SIGTERM))
            del module  # the callback runs, the handler raises inside it: reported, not raised
            assert lock() is None
            time.sleep(5)  # the signal comes again here
        assert caught.value.exit_code == 143
        assert "Exception ignored" not in capfd.readouterr().err
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_lost_signal_still_keeps_outputs_from_being_published(tmp_path: Path) -> None:
    """Whatever swallowed the exception, nothing is published and the block ends interrupted."""
    from steps.runtime.io import staged_outputs

    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(Interrupted), signals_raise():
            with contextlib.suppress(Interrupted):  # lost, as in a library that swallows it
                _wait_for_signal()
            with staged_outputs(tmp_path / "out") as stage:
                (stage / "scores.csv").write_text("1\n")
        assert not list((tmp_path / "out").iterdir())
        # Even with no output to publish:
        with pytest.raises(Interrupted), signals_raise(), contextlib.suppress(Interrupted):
            _wait_for_signal()
    finally:
        signal.signal(signal.SIGINT, previous)
    with staged_outputs(tmp_path / "later") as stage:  # the next block starts afresh
        (stage / "scores.csv").write_text("1\n")
    assert (tmp_path / "later" / "scores.csv").is_file()
