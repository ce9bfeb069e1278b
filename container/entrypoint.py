"""The image's entrypoint: ``python -m container.entrypoint prepare|train|evaluate``.

Each command composes the job's config (packaged defaults, then the config
channel, then runtime overrides), calls the same step function as a local run
with paths from the /opt/ml layout, and writes ``config.yaml`` beside its
outputs. A training job whose hyperparameter ``mode`` is ``run`` is a whole run
(``make cloud-run``): prepare, train and evaluate in one job. Outputs appear
together at the end or not at all. On an error the reason goes to
``/opt/ml/output/failure`` (and ``message``, which processing jobs report)
and the exit code is 2 for a user error, 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf import merge_overrides, to_yaml
from conf.channel import OVERRIDES_FILE, compose_from_channel, parse_overrides
from conf.contract import (
    CONFIG_CHANNEL,
    CONFIG_FILE,
    ENTRYPOINT,
    EVALUATE,
    EVALUATION_OUTPUT,
    INPUT_DATA_FLAG,
    LEGACY_MODEL_FILE,
    MODE_KEY,
    MODEL_ARCHIVE,
    MODEL_FILE,
    MODEL_INPUT,
    MODEL_QUALITY_FILE,
    OVERRIDES_FLAG,
    PREPARE,
    RUN_MODE,
    SPLITS,
    TRAIN,
    UNSET,
    OptMl,
    unset_to_empty,
)
from conf.errors import ConfigError, DataError, UserError, report, require_complete
from conf.runtime import StartOverrideError, check_start_overrides
from conf.secrets import install_log_redaction, redact
from container import hyperparameters
from steps import register_schemas
from steps.runtime import speed
from steps.runtime.interrupt import Interrupted, signals_raise

# The step modules (scikit-learn, pandas, matplotlib) are imported by the command
# that needs them, after its inputs and config are checked, so that a bad input
# fails in a second.

log = logging.getLogger("container")
# Metrics in SageMaker's model-quality statistics format (regression_metrics).
QUALITY_METRICS = ("poisson_deviance", "d2", "gini", "mae", "mse")


class UsageError(UserError):
    """The command line is wrong."""


# ----------------------------------------------------------------------------- config


def compose_job(channel: Path, runtime: Sequence[str]) -> DictConfig:
    """The job's config from its config channel and the runtime overrides.

    A job without the channel fails, naming it: training silently on the config
    packaged in the image would ignore everything the pipeline was built with.
    """
    if not channel.is_dir():
        raise ConfigError(
            f"The job has no config channel '{CONFIG_CHANNEL}' (expected at '{channel}'): "
            "its pipeline, or the tool that runs the image, passes the composed config there "
            "(conf.channel.write_channel)."
        )
    folder = channel
    if not (folder / OVERRIDES_FILE).is_file():
        raise ConfigError(
            f"The config channel at '{channel}' has no {OVERRIDES_FILE}: it must hold the "
            "folder written by conf.channel.write_channel (conf/, overrides.yaml, config.yaml)."
        )
    where = f"the config channel at '{channel}'"
    try:
        cfg = compose_from_channel(folder, list(runtime))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException, yaml.YAMLError, ValueError) as exc:
        raise ConfigError(
            f"Could not compose the job's config from {where} with overrides "
            f"{list(runtime)}: {_one_paragraph(exc)}"
        ) from exc
    return cfg


def check_start_time(channel: Path, overrides: Sequence[str]) -> None:
    """Refuse the user's start-time overrides that the pipeline cannot honour (``conf.runtime``)."""
    upserted = channel / CONFIG_FILE
    if not overrides or not upserted.is_file():
        return
    config = OmegaConf.load(upserted)
    assert isinstance(config, DictConfig)  # a composed config is a mapping
    try:
        check_start_overrides(config, overrides)
    except StartOverrideError as exc:
        raise ConfigError(str(exc)) from None


def job_config(channel: Path, runtime: Sequence[str]) -> DictConfig:
    """``compose_job``, checked for missing values and logged."""
    cfg = compose_job(channel, runtime)
    require_complete(cfg)
    log.info("Resolved config (overrides %s):\n%s", list(runtime), to_yaml(cfg))
    return cfg


def runtime_overrides(text: str) -> list[str]:
    """Split an override string; unbalanced quotes are a user error."""
    try:
        return parse_overrides(text)
    except ValueError as exc:
        raise ConfigError(f"Cannot parse the overrides {text!r}: {exc}.") from exc


def training_overrides(paths: OptMl, cli_overrides: str) -> list[str]:
    """Overrides of a training job: the ``overrides`` hyperparameter, CLI, then tuned keys."""
    values = hyperparameters.read(paths.hyperparameters)
    values.pop(MODE_KEY, None)
    text, keyed = hyperparameters.split(values)
    runtime = runtime_overrides(text) + runtime_overrides(cli_overrides)
    check_start_time(paths.channel(CONFIG_CHANNEL), runtime)
    if not keyed:
        return runtime
    base = compose_job(paths.channel(CONFIG_CHANNEL), runtime)
    typed = [hyperparameters.typed_override(base, k, v) for k, v in keyed.items()]
    return merge_overrides(runtime, typed)


def write_config(folder: Path, cfg: DictConfig) -> None:
    """The resolved config a job ran with, beside its outputs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(to_yaml(cfg))


# --------------------------------------------------------------------------- commands


def run_prepare(paths: OptMl, overrides: str) -> None:
    """Processing job: load, validate and split into output/{train,validation,test}."""
    channel, runtime = paths.processing_input(CONFIG_CHANNEL), runtime_overrides(overrides)
    check_start_time(channel, runtime)
    cfg = job_config(channel, runtime)
    from steps.prepare import prepare

    loaded(cfg)
    prepare(cfg, paths.processing_outputs, extra_files={CONFIG_FILE: to_yaml(cfg)})
    log.info("Published %s to %s", ", ".join(SPLITS), paths.processing_outputs)


def job_mode(paths: OptMl) -> str:
    """The training job's ``MODE_KEY`` hyperparameter: empty (the pipeline's step) or ``run``."""
    mode = unset_to_empty(hyperparameters.read(paths.hyperparameters).get(MODE_KEY))
    if mode not in ("", RUN_MODE):
        raise UsageError(
            f"The hyperparameter {MODE_KEY}={mode!r} names no job: leave it out (train on the "
            f"job's channels) or set {MODE_KEY}={RUN_MODE} (a whole run in one job)."
        )
    return mode


def run_train(paths: OptMl, overrides: str) -> None:
    """Training job: fit on the train channel, early-stop on validation, save the model.

    With the hyperparameter ``mode=run`` the job is a whole run instead (``run_whole``).
    """
    if job_mode(paths) == RUN_MODE:
        run_whole(paths, overrides)
        return
    train_dir = require_input(paths.channel("train"), "training channel 'train'")
    validation_dir = require_input(paths.channel("validation"), "training channel 'validation'")
    cfg = job_config(paths.channel(CONFIG_CHANNEL), training_overrides(paths, overrides))
    from steps.runtime.io import staged_outputs
    from steps.train import train

    loaded(cfg)
    with staged_outputs(paths.model) as stage:
        train(cfg, train_dir, validation_dir, stage)
        write_config(stage, cfg)
    log.info("Published the model to %s", paths.model)


def run_whole(paths: OptMl, overrides: str) -> None:
    """Training job of a whole run: load, validate, split, train and evaluate in one job.

    The model goes to ``/opt/ml/model`` (with ``config.yaml``); metrics, plots and
    ``config.yaml`` to ``/opt/ml/output/data``; the splits stay in a scratch folder.
    """
    cfg = job_config(paths.channel(CONFIG_CHANNEL), training_overrides(paths, overrides))
    import steps.plots  # noqa: F401
    from steps.evaluate import evaluate
    from steps.prepare import prepare
    from steps.runtime.io import staged_outputs
    from steps.train import train

    loaded(cfg)
    with tempfile.TemporaryDirectory(prefix="splits-") as scratch:
        splits = prepare(cfg, Path(scratch))
        with staged_outputs(paths.model) as stage:
            train(cfg, splits["train"], splits["validation"], stage)
            write_config(stage, cfg)
        with staged_outputs(paths.output_data) as stage:
            evaluate(cfg, paths.model, splits["test"], stage, validation_dir=splits["validation"])
            write_config(stage, cfg)
    log.info("Published the model to %s and the evaluation to %s", paths.model, paths.output_data)


def run_evaluate(paths: OptMl, overrides: str) -> None:
    """Processing job: score the model on test (and validation) into output/evaluation."""
    model_input = require_input(
        paths.processing_input(MODEL_INPUT), f"processing input '{MODEL_INPUT}'"
    )
    test_dir = require_input(paths.processing_input("test"), "processing input 'test'")
    validation = paths.processing_input("validation")
    channel, runtime = paths.processing_input(CONFIG_CHANNEL), runtime_overrides(overrides)
    check_start_time(channel, runtime)
    cfg = job_config(channel, runtime)
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        model_dir = unpack_model(model_input, Path(tmp))
        cfg = with_trained_model(cfg, model_dir)
        import steps.plots  # noqa: F401
        from steps.evaluate import evaluate
        from steps.runtime.io import staged_outputs, write_json

        loaded(cfg)
        output = paths.processing_output(EVALUATION_OUTPUT)
        with staged_outputs(output) as stage:
            metrics = evaluate(
                cfg,
                model_dir,
                test_dir,
                stage,
                validation_dir=validation if _has_files(validation) else None,
            )
            write_json(stage / MODEL_QUALITY_FILE, model_quality(metrics["test"]))
            write_config(stage, cfg)
        log.info("Published the evaluation to %s", output)


def loaded(cfg: DictConfig) -> None:
    """Check ``cfg`` (scikit-learn loads for the estimator's constraints), then end start-up.

    The step function checks the config again (at no cost) before any work.
    """
    from steps.checks import check_config

    check_config(cfg)
    speed.resume_collector()


COMMANDS: dict[str, Callable[[OptMl, str], None]] = {
    PREPARE: run_prepare,
    TRAIN: run_train,
    EVALUATE: run_evaluate,
}


# ---------------------------------------------------------------------------- helpers


def require_input(folder: Path, what: str) -> Path:
    """``folder`` if it holds files; otherwise a ``DataError`` naming the missing input."""
    if not _has_files(folder):
        state = "is empty" if folder.is_dir() else "does not exist"
        raise DataError(
            f"The job's {what} at '{folder}' {state}: the pipeline must pass the output of "
            "the step before it as this input."
        )
    return folder


def unpack_model(model_input: Path, scratch: Path) -> Path:
    """The folder holding the model file: the input itself, or model.tar.gz unpacked.

    A folder holding only a model saved before the safe format is returned too,
    so that loading it says how to retrain.
    """
    if (model_input / MODEL_FILE).is_file() or (model_input / LEGACY_MODEL_FILE).is_file():
        return model_input
    archives = sorted(model_input.rglob(MODEL_ARCHIVE))
    if len(archives) != 1:
        raise DataError(
            f"Expected {MODEL_FILE} or exactly one {MODEL_ARCHIVE} in the model input "
            f"'{model_input}', found {len(archives)} archives: pass the training job's "
            "model artifacts as the 'model' input."
        )
    from steps.runtime.io import extract_safely

    try:
        with tarfile.open(archives[0]) as tar:
            extract_safely(tar, scratch)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"Cannot unpack '{archives[0]}': {_one_paragraph(exc)}") from exc
    if not any((scratch / name).is_file() for name in (MODEL_FILE, LEGACY_MODEL_FILE)):
        raise DataError(f"'{archives[0]}' holds no {MODEL_FILE} at its top level.")
    return scratch


def with_trained_model(cfg: DictConfig, model_dir: Path) -> DictConfig:
    """``cfg`` with the ``model`` section the model was trained with (tuned values included).

    The training job writes its config beside the model; a tuning job's best
    model was trained with values the evaluation job's own config does not know.
    """
    trained = model_dir / CONFIG_FILE
    if not trained.is_file():
        return cfg
    try:
        model = OmegaConf.load(trained).model
    except (OmegaConfBaseException, yaml.YAMLError, AttributeError) as exc:
        reason = _one_paragraph(exc)
        raise DataError(f"Cannot read the model's config '{trained}': {reason}") from exc
    out = cfg.copy()
    out.model = model
    return out


def model_quality(test: dict[str, float]) -> dict[str, Any]:
    """Test metrics in SageMaker's model-quality statistics format."""
    values = {name: test[name] for name in QUALITY_METRICS if name in test}
    if "mse" in values:
        values["rmse"] = math.sqrt(values["mse"])
    return {
        "regression_metrics": {
            name: {"value": float(value), "standard_deviation": "NaN"}
            for name, value in values.items()
            if math.isfinite(value)
        }
    }


def report_failure(paths: OptMl, reason: str) -> None:
    """Write the reason where SageMaker reads it (training: failure, processing: message).

    Credential values from the environment never reach the reason.
    """
    reason = redact(reason)
    report(reason)
    try:
        paths.failure.parent.mkdir(parents=True, exist_ok=True)
        for path in (paths.failure, paths.message):
            path.write_text(reason + "\n", encoding="utf-8")
    except OSError as exc:
        report(f"could not write {paths.failure}: {exc}")


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def _one_paragraph(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ------------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        usage = self.format_usage().strip().removeprefix("usage: ")
        raise UsageError(f"{message}. Usage: {usage}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(prog=" ".join(ENTRYPOINT), description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=sorted(COMMANDS), help="the job to run")
    parser.add_argument(
        OVERRIDES_FLAG,
        default="",
        help='Hydra overrides applied after the config channel, e.g. "model=glm_poisson"; '
        f"'{UNSET}': none",
    )
    parser.add_argument(
        INPUT_DATA_FLAG,
        default="",
        help="read this CSV/Parquet data set (data=file data.path=URI); "
        f"'{UNSET}' or empty: the configured source",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one job command; return the process exit code."""
    register_schemas()
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["serve"]:  # SageMaker hosting and batch transform start `serve`
        from container.serve import main as serve

        return serve(args_list[1:])
    speed.pause_collector()  # until the command has loaded its libraries (``loaded``)
    try:
        return _run_command(argv)
    finally:
        speed.resume_collector()


def _run_command(argv: Sequence[str] | None) -> int:
    """The job command of ``main``, its failure reported as the contract says."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
        force=True,
    )
    install_log_redaction()
    paths = OptMl.from_env()
    try:
        args = parse_args(argv)
        log.info("Running '%s' with /opt/ml at %s", args.command, paths.root)
        data = hyperparameters.input_data_overrides(args.input_data_uri)
        overrides = unset_to_empty(args.overrides)
        with signals_raise():
            COMMANDS[args.command](paths, f"{data} {overrides}".strip())
    except Interrupted as err:
        report_failure(paths, "interrupted")
        return err.exit_code
    except UserError as err:
        report_failure(paths, _one_paragraph(err))
        return 2
    except Exception as err:
        log.exception("Unexpected error")
        report_failure(
            paths,
            f"Unexpected error ({type(err).__name__}: {_one_paragraph(err)}). "
            "The job's log has the traceback.",
        )
        return 1
    log.info("Done")
    return 0


if __name__ == "__main__":
    speed.exit_now(main())
