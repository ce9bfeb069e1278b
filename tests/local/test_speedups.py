"""The start-up speed-ups change how fast a run starts and ends, never what it writes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.runtime import speed
from steps.train import load_model
from tests.local.support import run

SMALL = "data.n_rows=20000"
# Written byte for byte the same by the same code on the same data. (The model file is
# a zip whose member names and times change from one save to the next: the model is
# compared by its predictions instead.)
DETERMINISTIC = (
    "config.yaml",
    "metrics.json",
    "calibration.png",
    "lorenz.png",
    "data/train/data.parquet",
    "data/validation/data.parquet",
    "data/test/data.parquet",
)


def digests(out: Path) -> dict[str, str]:
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in DETERMINISTIC}


@pytest.mark.slow
def test_a_run_writes_the_same_outputs_with_the_speedups_off(tmp_path: Path) -> None:
    outs = {}
    for switch in ("1", "0"):
        out = tmp_path / f"speedups-{switch}"
        # The speed module's debug lines in run.log show which way the prepare step ran.
        args = (SMALL, f"hydra.run.dir={out}", "hydra.verbose=steps.runtime.speed")
        result = run(tmp_path, *args, env={speed.SWITCH: switch})
        assert result.returncode == 0, result.stderr
        outs[switch] = out
    on, off = outs["1"], outs["0"]
    assert "prepare runs ahead, in a forked child" in (on / "run.log").read_text()
    assert "prepare runs first, in this process" in (off / "run.log").read_text()

    assert (on / "metrics.json").read_text() == (off / "metrics.json").read_text()
    assert json.loads((on / "metrics.json").read_text())["test"]["n_rows"] == 4000
    assert (on / "config.yaml").read_text() == (off / "config.yaml").read_text()
    assert digests(on) == digests(off)

    test_split = pd.read_parquet(on / "data" / "test" / "data.parquet")
    predictions = [load_model(out / "model").predict(test_split) for out in (on, off)]
    assert np.array_equal(*predictions)
    assert predictions[0].std() > 0  # a fitted model, not a constant
