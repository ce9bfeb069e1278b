"""Start-up speed-ups: the garbage collector pauses while an entrypoint loads its libraries,
a finished command exits without teardown, and one switch turns every speed-up off."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steps.runtime import speed


@pytest.fixture
def speedups_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(speed.SWITCH, "0")


def test_pause_then_resume_freezes_what_was_loaded_and_collects_again() -> None:
    frozen = gc.get_freeze_count()
    speed.pause_collector()
    try:
        assert not gc.isenabled()
        loaded = [object() for _ in range(10)] + [[] for _ in range(10)]  # tracked objects
    finally:
        speed.resume_collector()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + 10
    gc.unfreeze()
    assert loaded


def test_resume_without_pause_changes_nothing() -> None:
    frozen = gc.get_freeze_count()
    speed.resume_collector()
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_pause_leaves_a_collector_someone_else_stopped_alone() -> None:
    gc.disable()
    try:
        speed.pause_collector()
        speed.resume_collector()
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("value", "on"),
    [(None, True), ("1", True), ("yes", True), ("0", False), (" off ", False), ("False", False)],
)
def test_one_switch_read_from_the_environment(monkeypatch, value: str | None, on: bool) -> None:
    if value is None:
        monkeypatch.delenv(speed.SWITCH, raising=False)
    else:
        monkeypatch.setenv(speed.SWITCH, value)
    assert speed.enabled() is on


def test_switched_off_the_collector_is_never_paused(speedups_off) -> None:
    frozen = gc.get_freeze_count()
    speed.pause_collector()
    try:
        assert gc.isenabled()
    finally:
        speed.resume_collector()
    assert gc.isenabled() and gc.get_freeze_count() == frozen


EXIT_PROBE = """
import atexit, sys
from steps.runtime import speed
atexit.register(lambda: print("exit handler ran", flush=True))
class Teardown:
    def __del__(self):
        print("teardown ran", flush=True)
sys.modules["probe"] = Teardown()  # freed only by the interpreter's teardown
print("done", flush=True)
speed.exit_now(3)
"""


@pytest.mark.parametrize(("switch", "teardown"), [("1", False), ("0", True)])
def test_exit_now_runs_the_exit_handlers_and_skips_teardown_unless_off(
    switch: str, teardown: bool
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", EXIT_PROBE],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, speed.SWITCH: switch},
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines()[:2] == ["done", "exit handler ran"]
    assert ("teardown ran" in result.stdout) is teardown
