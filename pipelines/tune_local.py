"""``make local-tune``: search the ``tuning`` space on this machine with optuna.

The search space, objective and budget are the same ``tuning`` config the
SageMaker tuning step reads. Data are prepared once; each trial trains on the
train split and is scored on the validation split; the best trial's model is
evaluated on the test split.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import hydra
import optuna
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from conf import run_main, to_yaml
from pipelines.local import guarded, summary_table
from steps.errors import ConfigError, require_complete
from steps.evaluate import evaluate
from steps.io import staged_outputs
from steps.prepare import prepare
from steps.train import train

log = logging.getLogger(__name__)


def suggest(trial: optuna.Trial, parameters: DictConfig) -> dict[str, Any]:
    """Draw one value per tuned parameter from its range (checked when the config composed)."""
    values: dict[str, Any] = {}
    for name, spec in parameters.items():
        log_scale = spec.scaling == "Logarithmic"
        if spec.type == "integer":
            values[name] = trial.suggest_int(name, int(spec.min), int(spec.max), log=log_scale)
        elif spec.type == "continuous":
            values[name] = trial.suggest_float(name, spec.min, spec.max, log=log_scale)
        else:
            values[name] = trial.suggest_categorical(name, list(spec["values"]))
    return values


def sampler(tuning: DictConfig) -> optuna.samplers.BaseSampler:
    """Bayesian search maps to TPE, Random to random sampling; both seeded."""
    if tuning.strategy == "Bayesian":
        return optuna.samplers.TPESampler(seed=tuning.seed)
    if tuning.strategy == "Random":
        return optuna.samplers.RandomSampler(seed=tuning.seed)
    raise ConfigError(f"tuning.strategy='{tuning.strategy}': use Bayesian or Random.")


def with_params(cfg: DictConfig, params: dict[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with ``model.<name>`` set for each tuned parameter."""
    trial_cfg = cfg.copy()
    for name, value in params.items():
        trial_cfg.model[name] = value
    return trial_cfg


def tune(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Run the search; write trials.csv, the best config and the best model's report."""
    require_complete(cfg)
    tuning = cfg.tuning
    if tuning.objective_type not in ("Minimize", "Maximize"):
        raise ConfigError(
            f"tuning.objective_type='{tuning.objective_type}': use Minimize or Maximize."
        )
    splits = prepare(cfg, out / "data")

    def objective(trial: optuna.Trial) -> float:
        trial_cfg = with_params(cfg, suggest(trial, tuning.parameters))
        metrics = train(
            trial_cfg, splits["train"], splits["validation"], out / "trials" / f"{trial.number:03d}"
        )
        if tuning.objective_metric not in metrics:
            raise ConfigError(
                f"tuning.objective_metric='{tuning.objective_metric}' is not reported by "
                f"training (reported: {', '.join(metrics)})."
            )
        return metrics[tuning.objective_metric]

    study = optuna.create_study(direction=tuning.objective_type.lower(), sampler=sampler(tuning))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(
        objective,
        n_trials=tuning.max_jobs,
        n_jobs=tuning.max_parallel_jobs,
        catch=(),
        callbacks=[_log_trial],
    )
    best = study.best_trial
    best_cfg = with_params(cfg, best.params)
    best_dir = out / "trials" / f"{best.number:03d}"
    metrics = evaluate(best_cfg, best_dir, splits["test"], out, validation_dir=splits["validation"])
    overrides = [f"model.{k}={v}" for k, v in best.params.items()]
    with staged_outputs(out) as stage:
        (stage / "best_config.yaml").write_text(to_yaml(best_cfg))
        with open(stage / "trials.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["trial", tuning.objective_metric, *tuning.parameters])
            for t in study.trials:
                writer.writerow([t.number, t.value, *(t.params.get(k) for k in tuning.parameters)])
    print(f"best trial {best.number}: {tuning.objective_metric}={best.value:.6f}", flush=True)
    print(f"best overrides: {' '.join(overrides)}", flush=True)
    print(summary_table([(f"trial {best.number}", metrics)]), flush=True)
    print(f"Outputs: {out}", flush=True)
    return {"best_params": best.params, "best_value": best.value, "metrics": metrics}


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    log.info("trial %d/%s: %s -> %.6f", trial.number, len(study.trials), trial.params, trial.value)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
@guarded
def main(cfg: DictConfig) -> float:
    """Local tuning; returns the best objective value."""
    if not cfg.tuning.parameters:
        raise ConfigError(f"model '{cfg.model.name}' has no tuning.parameters to search.")
    log.info("Tuning %s over %s", cfg.model.name, OmegaConf.to_container(cfg.tuning.parameters))
    return tune(cfg, Path(HydraConfig.get().runtime.output_dir))["best_value"]


if __name__ == "__main__":
    run_main(main)
