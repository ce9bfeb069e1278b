"""``make local-tune``: the completion criterion and what local tuning does not emulate."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from conf import compose
from pipelines.local.tune import tune

TUNE = ["data.n_rows=3000", "model=glm_poisson", "tuning.max_jobs=3", "tuning.max_parallel_jobs=1"]


def trials(folder: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((folder / "trials.csv").open()))


def test_a_target_the_first_trial_reaches_stops_the_search_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Minimize the validation deviance: any first trial is at most 1e9.
    result = tune(compose([*TUNE, "tuning.target_objective=1e9"]), tmp_path)
    assert [t["trial"] for t in trials(tmp_path)] == ["0"]
    assert result["best_params"] and (tmp_path / "metrics.json").is_file()
    assert "reached by trial 0: stopped after 1 of 3 trials" in capsys.readouterr().out


def test_an_unreachable_target_runs_the_whole_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tune(compose([*TUNE, "tuning.target_objective=0.0"]), tmp_path)  # no deviance is below 0
    assert [t["status"] for t in trials(tmp_path)] == ["ok", "ok", "ok"]
    assert "reached" not in capsys.readouterr().out


def test_a_maximized_target_is_reached_from_below(tmp_path: Path) -> None:
    search = [*TUNE, "tuning.objective_metric=validation:d2", "tuning.objective_type=Maximize"]
    tune(compose([*search, "tuning.target_objective=-1e9"]), tmp_path / "reached")
    assert len(trials(tmp_path / "reached")) == 1
    tune(compose([*search, "tuning.target_objective=1.0"]), tmp_path / "unreached")
    assert len(trials(tmp_path / "unreached")) == 3


def test_early_stopping_is_not_emulated_and_one_line_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pipelines.local.tune"):
        tune(compose([*TUNE, "tuning.max_jobs=2", "tuning.early_stopping=Auto"]), tmp_path)
    warnings = [r.getMessage() for r in caplog.records if "early_stopping" in r.getMessage()]
    assert warnings == [
        "tuning.early_stopping=Auto is not emulated locally: every trial trains to its end"
    ]
    assert len(trials(tmp_path)) == 2  # every trial ran
