"""Housekeeping never deletes what it should keep: running executions, unreadable records."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from executor import ExecutorError, clean
from executor.api import _running
from executor.run import main


def execution(outputs: Path, name: str, age: float, record: object, stored: str = "") -> Path:
    """A finished execution folder with ``record`` and, optionally, a stored output."""
    path = outputs / name / "execution.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    os.utime(path, (time.time() - age, time.time() - age))
    if stored:
        (outputs / "s3" / stored).mkdir(parents=True)
        (outputs / "s3" / stored / "data.parquet").write_text("x")
    return path.parent


def recorded(uri: object) -> dict[str, object]:
    """A record whose one step wrote a processing output at ``uri``."""
    output = {"OutputName": "train", "S3Output": {"S3Uri": uri}}
    props = {"ProcessingOutputConfig": {"Outputs": [output]}}
    return {"Local": {"Steps": {"Prepare": {"Properties": props}}}}


def test_clean_keeps_the_newest_and_removes_the_rest_with_what_they_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    old = execution(tmp_path, "old", 100, recorded("s3://b/old/train"), "b/old/train")
    new = execution(tmp_path, "new", 0, recorded("s3://b/new/train"), "b/new/train")
    assert main(["clean", "--keep", "1", "--outputs", str(tmp_path)]) == 0
    assert not old.exists() and new.exists()
    assert not (tmp_path / "s3/b/old").exists() and (tmp_path / "s3/b/new/train").exists()
    assert "Removed 1 local execution(s)" in capsys.readouterr().out


def test_a_negative_or_unreadable_keep_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = execution(tmp_path, "one", 0, recorded("s3://b/one/train"))
    with pytest.raises(ExecutorError, match="0 or more"):
        clean(tmp_path, keep=-1)
    assert main(["clean", "--keep", "-1", "--outputs", str(tmp_path)]) == 2
    assert "0 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["clean", "--keep", "x", "--outputs", str(tmp_path)])
    assert exited.value.code == 2
    assert folder.exists()


def test_a_running_execution_is_never_touched(tmp_path: Path) -> None:
    """Its process holds its lock; a killed one's lock is released and it can go."""
    running = execution(tmp_path, "running", 100, recorded("s3://b/run/train"), "b/run/train")
    with _running(running):
        assert clean(tmp_path, keep=0) == (0, 1)
        assert running.exists() and (tmp_path / "s3/b/run/train").exists()
    assert clean(tmp_path, keep=0) == (1, 0)  # the lock is gone with its process
    assert not running.exists()


@pytest.mark.parametrize(
    "record", [[1, 2], recorded(42), {"Local": []}], ids=["list", "uri-int", "local-list"]
)
def test_a_malformed_record_is_skipped_with_a_warning(
    record: object, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = execution(tmp_path, "bad", 100, record, "b/bad/train")
    good = execution(tmp_path, "good", 50, recorded("s3://b/good/train"), "b/good/train")
    assert clean(tmp_path, keep=0) == (1, 1)
    assert bad.exists() and (tmp_path / "s3/b/bad/train").exists()
    assert not good.exists()
    assert f"{bad / 'execution.json'} is not an execution record" in capsys.readouterr().err
