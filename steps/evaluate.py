"""Evaluate step: metrics.json, calibration.png and lorenz.png for the test split."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from conf.contract import CALIBRATION_FILE, LORENZ_FILE, METRICS_FILE
from conf.errors import DataError
from steps.checks import check_config
from steps.metrics import calibration_table, gini
from steps.model import FrequencyModel, exposure
from steps.runtime.io import staged_outputs, write_json
from steps.train import load_model, read_input, report, split_metrics

log = logging.getLogger(__name__)
REPORTED = ("poisson_deviance", "d2", "gini", "mae", "mse", "baseline_poisson_deviance")
# A model whose test deviance is more than this many times the constant baseline's has
# failed (diverged, or learnt noise), not merely underfitted.
FAILED_MODEL_FACTOR = 2.0


def model_warning(test: dict[str, Any]) -> str | None:
    """Why the test metrics say the model failed, or None.

    A deviance that is not finite, or far worse than predicting the mean (the constant
    baseline), means the fit diverged or learnt noise: the run says so loudly, and
    the pipeline's quality gate refuses to register such a model.
    """
    deviance, baseline = test.get("poisson_deviance"), test.get("baseline_poisson_deviance")
    if deviance is None or not math.isfinite(deviance):
        return f"the test Poisson deviance is {deviance}: the model's predictions are not usable"
    if (
        baseline is not None
        and math.isfinite(baseline)
        and deviance > FAILED_MODEL_FACTOR * baseline
    ):
        return (
            f"the test Poisson deviance {deviance:.6g} is more than {FAILED_MODEL_FACTOR:g} times "
            f"the constant baseline's {baseline:.6g}: the fit diverged or learnt noise"
        )
    return None


def check_features(model: FrequencyModel, cfg: DictConfig) -> None:
    """The model must have been trained on the features the config names."""
    config = (list(cfg.data.categorical), list(cfg.data.numeric))
    if (model.categorical, model.numeric) != config:
        raise DataError(
            f"The model was trained on categorical {model.categorical} and numeric "
            f"{model.numeric}, but the config names categorical {config[0]} and numeric "
            f"{config[1]}: evaluate with the data config the model was trained with, or retrain."
        )


def evaluate(
    cfg: DictConfig,
    model_dir: Path,
    test_dir: Path,
    output_dir: Path,
    validation_dir: Path | None = None,
) -> dict[str, Any]:
    """Score the test split (and validation, if given); write metrics and plots together.

    The validation metrics are the ones the train step recorded in the model;
    ``validation_dir`` is read only for a model that has none. Undefined metrics (a
    split too small for them) are written as ``null`` with a warning.
    """
    check_config(cfg)
    model = load_model(model_dir)
    check_features(model, cfg)
    test = read_input(test_dir, cfg, "test")
    predicted = model.predict(test)
    metrics: dict[str, Any] = {
        "model": model.name,
        "params": model.params,
        "data": cfg.data.name,
        "test": split_metrics(cfg, test, predicted, model.train_mean_frequency),
    }
    if validation_dir is not None and "validation" in model.metrics:
        metrics["validation"] = model.metrics["validation"]
    elif validation_dir is not None:
        validation = read_input(validation_dir, cfg, "validation")
        metrics["validation"] = split_metrics(
            cfg, validation, model.predict(validation), model.train_mean_frequency
        )
    report("test", metrics["test"], REPORTED)
    warning = model_warning(metrics["test"])
    if warning:
        metrics["warning"] = f"The model failed: {warning}. Do not use it."
        log.warning("%s", metrics["warning"])

    claims, expo = test[cfg.data.target].to_numpy(float), exposure(test, cfg.data)
    truth = cfg.data.true_frequency if cfg.data.true_frequency in test else None
    table = calibration_table(
        claims,
        expo,
        predicted,
        cfg.evaluation.calibration_bins,
        test[truth].to_numpy(float) if truth else None,
    )
    metrics["calibration"] = table.to_dict(orient="records")
    rankings = {model.name: predicted, "observed (oracle)": claims / expo}
    if truth:
        rankings["true frequency"] = test[truth].to_numpy(float)
    ginis = {label: gini(claims, expo, r) for label, r in rankings.items()}
    test_dev = metrics["test"]["poisson_deviance"]
    title = f"{model.name} on {cfg.data.name}: test deviance {test_dev:.4f}"

    from steps.plots import calibration_plot, lorenz_plot

    with staged_outputs(Path(output_dir)) as stage:
        calibration_plot(table, f"Calibration: {title}", stage / CALIBRATION_FILE)
        lorenz_plot(
            claims, expo, rankings, ginis, f"Lorenz curve: {model.name}", stage / LORENZ_FILE
        )
        write_json(stage / METRICS_FILE, metrics)
    log.info("Wrote %s, %s and %s to %s", METRICS_FILE, CALIBRATION_FILE, LORENZ_FILE, output_dir)
    return metrics
