"""``make local-tune``: search the ``tuning`` space on this machine with optuna.

The search space, objective and budget are the same ``tuning`` config the
SageMaker tuning step reads. Data are prepared once; each trial trains on the
train split and is scored on the validation split; the best trial's model is
evaluated on the test split. ``tuning.target_objective`` is the completion
criterion, as in SageMaker: once a trial's objective reaches it (Minimize: at
most it), no further trial starts. Early stopping of trials
(``tuning.early_stopping: Auto``) is not emulated (a warning says so) and a warm
start (``tuning.warm_start_from``) is refused: it reads SageMaker tuning jobs.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

import hydra
import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from conf import to_yaml
from conf.errors import ConfigError, DataError, UserError, require_complete
from pipelines.local.run import guarded, launch, summary_table
from steps.checks import check_config, check_tuning
from steps.runtime import speed
from steps.runtime.io import staged_outputs

log = logging.getLogger(__name__)


def suggest(trial: optuna.Trial, parameters: DictConfig) -> dict[str, Any]:
    """Draw one value per tuned parameter from its range (checked when the config composed)."""
    values: dict[str, Any] = {}
    for key, spec in parameters.items():
        name = str(key)
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


def check_local_tuning(cfg: DictConfig) -> None:
    """``check_tuning``, and no warm start: its parents are SageMaker tuning jobs."""
    check_tuning(cfg)
    if cfg.tuning.warm_start_from:
        parents = ", ".join(str(p) for p in cfg.tuning.warm_start_from)
        raise ConfigError(
            f"tuning.warm_start_from=[{parents}]: a warm start reads its parent tuning jobs' "
            "results in SageMaker; local tuning starts cold. Set tuning.warm_start_from=[] "
            "(or tune with `make cloud-tune`)."
        )


def reaches(value: float, target: float, objective_type: str) -> bool:
    """Whether an objective value reaches the completion criterion (Minimize: at most it)."""
    return value <= target if objective_type == "Minimize" else value >= target


def with_params(cfg: DictConfig, params: dict[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with ``model.<name>`` set for each tuned parameter."""
    trial_cfg = cfg.copy()
    for name, value in params.items():
        trial_cfg.model[name] = value
    return trial_cfg


def tune(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Run the search; write trials.csv, the best config and the best model's report.

    A failing trial does not stop the search: trials.csv lists every trial with its
    status and error. If every trial fails, the first trial's reason is raised.
    """
    from steps.evaluate import evaluate
    from steps.prepare import prepare
    from steps.train import train

    speed.resume_collector()

    require_complete(cfg)
    check_config(cfg)
    check_local_tuning(cfg)
    tuning = cfg.tuning
    if tuning.early_stopping == "Auto":
        log.warning(
            "tuning.early_stopping=Auto is not emulated locally: every trial trains to its end"
        )
    splits = prepare(cfg, out / "data")
    errors: dict[int, BaseException] = {}

    def objective(trial: optuna.Trial) -> float:
        trial_cfg = with_params(cfg, suggest(trial, tuning.parameters))
        try:
            metrics = train(
                trial_cfg,
                splits["train"],
                splits["validation"],
                out / "trials" / f"{trial.number:03d}",
            )
            value = metrics[tuning.objective_metric]
            if not math.isfinite(value):
                raise DataError(f"{tuning.objective_metric} is undefined ({value}) for this trial")
        except Exception as err:
            errors[trial.number] = err
            reason = " ".join(str(err).split()) or type(err).__name__
            trial.set_user_attr("error", reason)
            log.warning("trial %d failed: %s", trial.number, reason)
            raise
        return value

    study = optuna.create_study(direction=tuning.objective_type.lower(), sampler=sampler(tuning))
    # Failed trials are reported once, by this module, without optuna's traceback.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    reached: list[optuna.trial.FrozenTrial] = []

    def completion(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Stop the study once a trial reaches ``tuning.target_objective`` (running ones end)."""
        target, value = tuning.target_objective, trial.value
        if target is None or value is None or trial.state != TrialState.COMPLETE:
            return
        if reaches(value, float(target), tuning.objective_type):
            reached.append(trial)
            study.stop()

    study.optimize(
        objective,
        n_trials=tuning.max_jobs,
        n_jobs=tuning.max_parallel_jobs,
        catch=(Exception,),
        callbacks=[_log_trial, completion],
    )
    trials = sorted(study.trials, key=lambda t: t.number)
    with staged_outputs(out) as stage, open(stage / "trials.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "status", "error", tuning.objective_metric, *tuning.parameters])
        for t in trials:
            status = "ok" if t.state == TrialState.COMPLETE else "failed"
            error = t.user_attrs.get("error", "" if status == "ok" else t.state.name.lower())
            row = [t.number, status, error, t.value, *(t.params.get(k) for k in tuning.parameters)]
            writer.writerow(row)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if not completed:
        first = trials[0].number if trials else 0
        cause = errors.get(first)
        message = (
            f"All {len(trials)} trials failed; the first (trial {first}) failed with: "
            f"{trials[0].user_attrs.get('error', 'no reason recorded') if trials else '-'}"
        )
        if cause is None or isinstance(cause, UserError):
            raise (type(cause) if cause else DataError)(message) from None
        raise RuntimeError(message) from cause
    best = study.best_trial
    best_cfg = with_params(cfg, best.params)
    best_dir = out / "trials" / f"{best.number:03d}"
    metrics = evaluate(best_cfg, best_dir, splits["test"], out, validation_dir=splits["validation"])
    overrides = [f"model.{k}={v}" for k, v in best.params.items()]
    with staged_outputs(out) as stage:
        (stage / "best_config.yaml").write_text(to_yaml(best_cfg))
    failed = len(trials) - len(completed)
    if failed:
        print(f"{failed} of {len(trials)} trials failed (see trials.csv)", flush=True)
    if reached:
        hit = min(reached, key=lambda t: t.number)
        print(
            f"tuning.target_objective={tuning.target_objective} reached by trial "
            f"{hit.number}: stopped after {len(trials)} of {tuning.max_jobs} trials",
            flush=True,
        )
    print(f"best trial {best.number}: {tuning.objective_metric}={best.value:.6f}", flush=True)
    print(f"best overrides: {' '.join(overrides)}", flush=True)
    print(summary_table([(f"trial {best.number}", metrics)]), flush=True)
    print(f"Outputs: {out}", flush=True)
    return {"best_params": best.params, "best_value": best.value, "metrics": metrics}


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    if trial.state == TrialState.COMPLETE:
        log.info("trial %d: %s -> %.6f", trial.number, trial.params, trial.value)


@hydra.main(config_path="../../conf", config_name="config", version_base="1.3")
@guarded
def hydra_main(cfg: DictConfig, out: Path) -> float:
    """Local tuning; returns the best objective value."""
    log.info("Tuning %s over %s", cfg.model.name, OmegaConf.to_container(cfg.tuning.parameters))
    return tune(cfg, out)["best_value"]


def main() -> None:
    """``python -m pipelines.local.tune [overrides]``."""
    speed.exit_now(launch(hydra_main, extra_check=check_local_tuning))


if __name__ == "__main__":
    from pipelines.local.tune import main as _main

    _main()
