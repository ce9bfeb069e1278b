"""Prepare, train and evaluate on small synthetic data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig

from conf import compose
from conf.contract import METRIC_REGEX
from conf.errors import ConfigError, DataError, OutputExistsError
from steps.evaluate import evaluate
from steps.prepare import prepare
from steps.runtime.io import read_split, staged_outputs
from steps.train import train


def test_prepare_splits_with_the_configured_fractions(
    small_cfg: DictConfig, splits: dict[str, Path]
) -> None:
    frames = {name: read_split(path) for name, path in splits.items()}
    sizes = {name: len(df) for name, df in frames.items()}
    assert sizes == {"train": 13000, "validation": 3000, "test": 4000}
    ids = pd.concat([df["IDpol"] for df in frames.values()])
    assert ids.is_unique and len(ids) == 20000
    assert "TrueFrequency" in frames["test"]


def test_prepare_is_deterministic(small_cfg: DictConfig, splits: dict[str, Path], tmp_path) -> None:
    again = prepare(small_cfg, tmp_path)
    pd.testing.assert_frame_equal(read_split(again["test"]), read_split(splits["test"]))


def test_prepare_refuses_to_overwrite(small_cfg: DictConfig, splits: dict[str, Path]) -> None:
    before = (splits["train"] / "data.parquet").stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="Refusing to overwrite"):
        prepare(small_cfg, splits["train"].parent)
    assert (splits["train"] / "data.parquet").stat().st_mtime_ns == before


def test_bad_split_fractions_name_the_keys(tmp_path) -> None:
    cfg = compose(["data.n_rows=1000", "split.test_fraction=0.9"])
    with pytest.raises(ConfigError, match=re.escape("split.test_fraction=0.9")):
        prepare(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "train").exists()


@pytest.mark.parametrize("model", ["hgb_poisson", "glm_poisson"])
def test_models_beat_the_constant_baseline(
    model: str, splits: dict[str, Path], tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = compose(["data.n_rows=20000", f"model={model}"])
    baseline = train(
        compose(["data.n_rows=20000", "model=constant"]),
        splits["train"],
        splits["validation"],
        tmp_path / "constant",
    )
    metrics = train(cfg, splits["train"], splits["validation"], tmp_path / model)
    key = "validation:poisson_deviance"
    assert metrics[key] < baseline[key]
    assert metrics["validation:d2"] > 0.01
    printed = capsys.readouterr().out
    pattern = METRIC_REGEX.format(split="validation", name="poisson_deviance")
    assert float(re.findall(pattern, printed)[-1]) == pytest.approx(metrics[key], abs=1e-6)


def test_evaluate_writes_metrics_and_plots(
    small_cfg: DictConfig, splits: dict[str, Path], tmp_path
) -> None:
    train(small_cfg, splits["train"], splits["validation"], tmp_path / "model")
    metrics = evaluate(
        small_cfg, tmp_path / "model", splits["test"], tmp_path / "report", splits["validation"]
    )
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert saved["test"]["poisson_deviance"] == pytest.approx(metrics["test"]["poisson_deviance"])
    test = saved["test"]
    assert test["poisson_deviance"] < test["baseline_poisson_deviance"]
    assert test["best_poisson_deviance"] < test["poisson_deviance"]
    assert 0 < test["d2"] < test["best_d2"] and 0 < test["gini"] < 1
    assert abs(test["predicted_claims"] / test["observed_claims"] - 1) < 0.15
    assert sum(b["n_rows"] for b in saved["calibration"]) == 4000
    assert "validation" in saved
    for name in ("calibration.png", "lorenz.png"):
        image = matplotlib.image.imread(tmp_path / "report" / name)
        assert image.shape[0] > 300 and image.shape[1] > 300
        assert image.std() > 0.05  # not a blank canvas
    assert not list((tmp_path / "report").glob(".staging-*"))


def test_a_model_that_failed_is_reported_as_such(
    small_cfg: DictConfig,
    splits: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A diverged fit (predictions of 1e30) is named in metrics.json and the log."""
    from steps.model import FrequencyModel

    small = compose(["data.n_rows=20000", "model=constant"])
    train(small, splits["train"], splits["validation"], tmp_path / "model")
    monkeypatch.setattr(FrequencyModel, "predict", lambda self, df: np.full(len(df), 1e30))
    evaluate(small, tmp_path / "model", splits["test"], tmp_path / "report")
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert "The model failed" in saved["warning"] and "constant baseline" in saved["warning"]
    assert "The model failed" in caplog.text
    monkeypatch.undo()
    assert "warning" not in evaluate(small, tmp_path / "model", splits["test"], tmp_path / "r2")


def test_model_warning_names_non_finite_and_far_worse_deviances() -> None:
    from steps.evaluate import model_warning

    assert model_warning({"poisson_deviance": 0.5, "baseline_poisson_deviance": 0.52}) is None
    assert model_warning({"poisson_deviance": 0.6, "baseline_poisson_deviance": 0.5}) is None
    assert "2 times" in str(
        model_warning({"poisson_deviance": 2.4e25, "baseline_poisson_deviance": 0.5})
    )
    assert "not usable" in str(model_warning({"poisson_deviance": float("nan")}))
    assert "not usable" in str(model_warning({"poisson_deviance": None}))


def test_evaluate_without_a_model_writes_nothing(
    small_cfg: DictConfig, splits: dict[str, Path], tmp_path
) -> None:
    with pytest.raises(DataError, match="No trained model"):
        evaluate(small_cfg, tmp_path / "none", splits["test"], tmp_path / "report")
    assert not (tmp_path / "report").exists() or not any((tmp_path / "report").iterdir())


def test_staged_outputs_publish_nothing_on_failure(tmp_path) -> None:
    with pytest.raises(RuntimeError), staged_outputs(tmp_path) as stage:
        (stage / "metrics.json").write_text("{}")
        raise RuntimeError("failed half-way")
    assert list(tmp_path.iterdir()) == []
