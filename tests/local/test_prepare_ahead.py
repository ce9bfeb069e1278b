"""A local run's prepare step in a forked child, while the run loads the training libraries."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import time
from pathlib import Path

import pytest

import steps.prepare
from conf import compose
from conf.errors import DataError
from pipelines.local import run as local
from steps.runtime import speed
from steps.runtime.interrupt import Interrupted


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the fork path here too (the test runner's own threads would disable it)."""
    monkeypatch.setattr(speed.threading, "active_count", lambda: 1)
    monkeypatch.delenv(speed.SWITCH, raising=False)


def test_the_step_runs_in_a_child_and_its_folders_arrive(forking, tmp_path: Path) -> None:
    cfg = compose(["data.n_rows=3000"])
    with local.prepared_ahead(cfg, tmp_path / "data") as prepared:
        pass
    splits = prepared()
    assert sorted(splits) == ["test", "train", "validation"]
    assert all((folder / "data.parquet").is_file() for folder in splits.values())


def test_the_step_is_in_another_process(forking, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(steps.prepare, "prepare", lambda cfg, folder: {"pid": os.getpid()})
    with local.prepared_ahead(compose([]), tmp_path) as prepared:
        pass
    assert prepared()["pid"] != os.getpid()


def test_a_user_error_in_the_child_is_raised_here_unchanged(forking, monkeypatch, tmp_path) -> None:
    def bad(cfg, folder):
        raise DataError("column 'Exposure' must have exposure > 0: 3 rows break it")

    monkeypatch.setattr(steps.prepare, "prepare", bad)
    with (
        pytest.raises(DataError, match=r"^column 'Exposure' must have exposure > 0: 3 rows"),
        local.prepared_ahead(compose([]), tmp_path),
    ):
        pass


def test_an_unexpected_error_keeps_the_childs_traceback(forking, monkeypatch, tmp_path) -> None:
    def broken(cfg, folder):
        return {}["missing"]

    monkeypatch.setattr(steps.prepare, "prepare", broken)
    with pytest.raises(KeyError) as info, local.prepared_ahead(compose([]), tmp_path):
        pass
    assert "in broken" in "".join(info.value.__notes__)


def test_a_child_that_dies_is_an_error_not_a_hang(forking, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(steps.prepare, "prepare", lambda cfg, folder: os.kill(os.getpid(), 9))
    with (
        pytest.raises(RuntimeError, match="ended without a result"),
        local.prepared_ahead(compose([]), tmp_path),
    ):
        pass


def test_a_failing_block_stops_the_child_at_once(forking, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(steps.prepare, "prepare", lambda cfg, folder: time.sleep(60))
    with pytest.raises(ImportError), local.prepared_ahead(compose([]), tmp_path):
        (child,) = multiprocessing.active_children()
        raise ImportError("a library failed to load")
    assert child.exitcode == -signal.SIGTERM  # stopped, not waited for
    assert not multiprocessing.active_children()


def test_without_a_safe_fork_the_step_runs_first_in_process(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(speed.threading, "active_count", lambda: 2)
    monkeypatch.setattr(steps.prepare, "prepare", lambda cfg, folder: {"pid": os.getpid()})
    with local.prepared_ahead(compose([]), tmp_path) as prepared:
        pass
    assert prepared() == {"pid": os.getpid()}


def test_with_the_speedups_off_the_step_runs_first_in_process(
    forking, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv(speed.SWITCH, "0")
    order: list[str] = []

    def prepare(cfg, folder):
        order.append("prepare")
        return {"pid": os.getpid()}

    monkeypatch.setattr(steps.prepare, "prepare", prepare)
    with local.prepared_ahead(compose([]), tmp_path) as prepared:
        order.append("block")
    assert order == ["prepare", "block"]
    assert prepared() == {"pid": os.getpid()}


def test_interrupted_crosses_a_process_boundary_intact() -> None:
    err = pickle.loads(pickle.dumps(Interrupted(signal.SIGTERM)))
    assert isinstance(err, Interrupted) and err.exit_code == 143


def test_a_child_that_reported_its_error_ends_on_its_own(
    forking, monkeypatch, tmp_path, capfd
) -> None:
    """Its result is in: stopping it then would race its exit (and print a traceback)."""
    stopped: list[int] = []
    monkeypatch.setattr(
        multiprocessing.context.ForkProcess, "terminate", lambda self: stopped.append(1)
    )

    def bad(cfg, folder):
        raise DataError("split.test_fraction=1.5 must be between 0 and 1")

    monkeypatch.setattr(steps.prepare, "prepare", bad)
    with pytest.raises(DataError), local.prepared_ahead(compose([]), tmp_path):
        pass
    assert stopped == []
    assert "Traceback" not in capfd.readouterr().err
