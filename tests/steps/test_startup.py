"""Start-up: the garbage collector pauses while an entrypoint loads its libraries."""

from __future__ import annotations

import gc

from steps.runtime import startup


def test_pause_then_resume_freezes_what_was_loaded_and_collects_again() -> None:
    frozen = gc.get_freeze_count()
    startup.pause()
    try:
        assert not gc.isenabled()
        loaded = [object() for _ in range(10)] + [[] for _ in range(10)]  # tracked objects
    finally:
        startup.resume()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + 10
    gc.unfreeze()
    assert loaded


def test_resume_without_pause_changes_nothing() -> None:
    frozen = gc.get_freeze_count()
    startup.resume()
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_pause_leaves_a_collector_someone_else_stopped_alone() -> None:
    gc.disable()
    try:
        startup.pause()
        startup.resume()
        assert not gc.isenabled()
    finally:
        gc.enable()
