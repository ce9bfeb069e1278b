"""Long steps show that they are alive."""

from __future__ import annotations

import logging
import time

import pytest

from steps.runtime.progress import progress


def test_progress_logs_start_heartbeats_and_end(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="steps.runtime.progress"), progress("Fitting", 0.05):
        time.sleep(0.3)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "Fitting ..."
    assert any(m.startswith("Fitting: ") and m.endswith("s so far") for m in messages[1:-1])
    assert messages[-1].startswith("Fitting: done in ")


def test_progress_ends_its_heartbeat_when_the_step_fails(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), pytest.raises(ValueError), progress("Fitting", 0.01):
        raise ValueError("bad")
    count = len(caplog.records)
    time.sleep(0.1)
    assert len(caplog.records) == count
