"""Checks of a composed config that need more than the schema: one set for every way to run.

``check_config`` is what a local run, each job of a multirun, local tuning and every
SageMaker job apply before any work: the schema once more (keys added with ``+``,
group/name mismatches), column roles, seeds, evaluation settings, the data format,
and the model parameters against the estimator's own constraints. ``check_tuning``
adds the search budget, objective and ranges.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf import validate
from conf.contract import METRIC_NAMES
from conf.errors import ConfigError

SEED_MAX = 2**32 - 2  # numpy and scikit-learn take seeds below 2**32; the split uses seed + 1
FORMATS = ("csv", "parquet")
# Rough peak memory of a local run per synthetic row (measured: 10x rows, ~390 bytes a row).
BYTES_PER_ROW = 500


# Configs (as resolved JSON) that passed check_config in this process: a local run's
# steps each check the config they are given, and the same config passes once.
_PASSED: set[str] = set()


def check_config(cfg: DictConfig) -> None:
    """Raise one ``ConfigError`` listing every problem with ``cfg``; return if none."""
    try:
        key = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True, default=str)
    except OmegaConfBaseException:
        key = None  # not resolvable: validation below names the problem
    if key in _PASSED:
        return
    _check(cfg)
    if key is not None:
        _PASSED.add(key)


def _check(cfg: DictConfig) -> None:
    try:
        validate(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(str(err)) from None
    problems = [
        *_seed_problems(cfg),
        *_column_problems(cfg.data, cfg.model.name),
        *_data_problems(cfg.data),
        *_evaluation_problems(cfg.evaluation),
        *_model_problems(cfg.model, dict(cfg.model)),
    ]
    if problems:
        raise ConfigError("Invalid config: " + "; ".join(problems) + ".")


def check_tuning(cfg: DictConfig) -> None:
    """Budget, objective, strategy and every range of ``cfg.tuning``, before the first trial."""
    tuning = cfg.tuning
    problems = []
    if not tuning.parameters:
        problems.append(f"model '{cfg.model.name}' has no tuning.parameters to search")
    if tuning.max_jobs < 1:
        problems.append(f"tuning.max_jobs={tuning.max_jobs} must be at least 1")
    if tuning.max_parallel_jobs < 1:
        problems.append(f"tuning.max_parallel_jobs={tuning.max_parallel_jobs} must be at least 1")
    if tuning.objective_metric not in METRIC_NAMES:
        problems.append(
            f"tuning.objective_metric='{tuning.objective_metric}' is not reported by training "
            f"(use one of {', '.join(METRIC_NAMES)})"
        )
    if tuning.objective_type not in ("Minimize", "Maximize"):
        problems.append(
            f"tuning.objective_type='{tuning.objective_type}': use Minimize or Maximize"
        )
    if tuning.strategy not in ("Bayesian", "Random"):
        problems.append(f"tuning.strategy='{tuning.strategy}': use Bayesian or Random")
    for name, spec in tuning.parameters.items():
        problems.extend(_range_problems(cfg.model, name, spec))
    if problems:
        raise ConfigError("Invalid tuning config: " + "; ".join(problems) + ".")


def check_memory(n_rows: int, available: int | None = None) -> None:
    """Refuse a synthetic data set that would not fit in the memory this machine has free."""
    available = _available_memory() if available is None else available
    need = n_rows * BYTES_PER_ROW
    if available and need > available:
        raise ConfigError(
            f"data.n_rows={n_rows} needs about {need / 2**30:.1f} GiB of memory and this "
            f"machine has {available / 2**30:.1f} GiB available: lower data.n_rows."
        )


# ---------------------------------------------------------------------------- helpers


def _seed_problems(cfg: DictConfig) -> Iterator[str]:
    for key in ("seed", "data.seed", "split.seed", "model.random_state", "tuning.seed"):
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not 0 <= int(value) <= SEED_MAX:
            yield f"{key}={value} must be between 0 and {SEED_MAX}"


def _column_problems(data: DictConfig, model_name: str) -> Iterator[str]:
    features = [*data.categorical, *data.numeric]
    for role in ("target", "exposure", "id_column", "true_frequency"):
        column = data[role]
        if column and column in features:
            yield (
                f"data.{role}='{column}' is also listed as a feature: a model that sees its "
                "own target, exposure, id or true frequency would report a leak as skill"
            )
    if data.exposure and data.exposure == data.target:
        yield f"data.target and data.exposure are the same column '{data.target}'"
    both = sorted(set(data.categorical) & set(data.numeric))
    if both:
        yield f"columns listed as both categorical and numeric: {', '.join(both)}"
    repeated = sorted({c for c in features if features.count(c) > 1} - set(both))
    if repeated:
        yield f"columns listed twice as features: {', '.join(repeated)}"
    if not features and model_name != "constant":
        yield f"model '{model_name}' needs at least one feature (data.categorical, data.numeric)"


def _data_problems(data: DictConfig) -> Iterator[str]:
    fmt = data.get("format")
    if fmt is not None and str(fmt).lower() not in FORMATS:
        yield f"data.format='{fmt}' is not supported: use csv or parquet (or null: from the suffix)"
    if "n_rows" in data and data.n_rows < 1:
        yield f"data.n_rows={data.n_rows} must be at least 1"
    if data.max_exposure is not None and not data.max_exposure > 0:
        yield f"data.max_exposure={data.max_exposure} must be positive (or null: no bound)"


def _evaluation_problems(evaluation: DictConfig) -> Iterator[str]:
    if evaluation.calibration_bins < 2:
        yield f"evaluation.calibration_bins={evaluation.calibration_bins} must be at least 2"
    if evaluation.lorenz_points < 2:
        yield f"evaluation.lorenz_points={evaluation.lorenz_points} must be at least 2"


def _model_problems(model: DictConfig, values: dict[str, Any]) -> Iterator[str]:
    """The model parameters checked by each scikit-learn estimator's own constraints."""
    for err in _param_errors(model.name, values):
        yield f"model '{model.name}': {err}"


def _param_errors(name: str, values: dict[str, Any]) -> list[str]:
    from sklearn.utils._param_validation import InvalidParameterError

    from steps.model import unit

    cfg = OmegaConf.create({**values, "name": name})
    estimator = unit(cfg).build(cfg, ["c"], ["n"])
    errors = []
    for part in _parts(estimator):
        try:
            part._validate_params()
        except InvalidParameterError as err:
            errors.append(str(err).rstrip("."))
    return errors


def _range_problems(model: DictConfig, name: str, spec: DictConfig) -> Iterator[str]:
    where = f"tuning.parameters.{name}"
    if spec.type == "categorical":
        candidates = list(spec["values"] or [])
    else:
        candidates = [spec.min, spec.max]
        if spec.scaling == "Logarithmic" and spec.min is not None and spec.min <= 0:
            yield f"{where} has Logarithmic scaling and needs min > 0 (got min={spec.min})"
            return
        if spec.type == "integer" and not all(float(v).is_integer() for v in candidates):
            yield f"{where} is an integer range and needs whole-number bounds"
            return
    for value in candidates:
        typed = int(value) if spec.type == "integer" else value
        try:
            merged = OmegaConf.merge(model, {name: typed})
        except OmegaConfBaseException as err:
            yield f"{where}: value {value!r} does not fit model.{name} ({err})"
            continue
        errors = _param_errors(model.name, dict(merged))
        if errors:
            yield f"{where}: the value {value!r} is out of range ({errors[0]})"


def _parts(estimator: Any) -> Iterator[Any]:
    """The estimator and every estimator nested in a pipeline or column transformer."""
    yield estimator
    for attr in ("steps", "transformers"):
        for item in getattr(estimator, attr, []):
            yield from _parts(item[1])


def _available_memory() -> int | None:
    """Bytes of memory available to new allocations (None where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
