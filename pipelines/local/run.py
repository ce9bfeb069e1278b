"""``make local-run``: prepare -> train -> evaluate, the step functions called here, in
Hydra's run folder.

Single runs and multiruns (``-m model.max_leaf_nodes=32,128``) share this
entrypoint; a multirun ends with a summary table across its runs. The prepare
step runs ahead while this process loads what training and evaluation need
(``prepared_ahead``), and the garbage collector waits while the libraries load:
the start-up speed-ups of ``steps.runtime.speed``, which
``CLAIM_FREQUENCY_SPEEDUPS=0`` turns off with the same outputs.

Before Hydra writes anything, every run's config gets the same checks as a
SageMaker job (``steps.checks.check_config``), runtime overrides may not read the
environment or files, and the run (or sweep) folder must be new or empty: a
multirun's jobs here, a single run's config as Hydra composed it (``RunChecks``). A failed
run is marked with a ``FAILED`` file in its folder; in a multirun the other jobs go
on, and the summary lists every job with its status. SIGINT and SIGTERM end the run
with one line, ``interrupted``, exit 130 or 143, no staging folder and no worker left.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from conf import CONF_DIR, to_yaml, user_message
from conf.contract import CONFIG_FILE, METRICS_FILE
from conf.errors import ConfigError, UserError, compose_checked, report, require_complete
from conf.secrets import check_runtime_overrides, install_log_redaction, redact
from pipelines.local.hydra_adapter import read_command_line, sweep_jobs
from steps import register_schemas
from steps.checks import check_config
from steps.runtime import speed
from steps.runtime.interrupt import Interrupted, exit_interrupted, signals_raise, watch_parent
from steps.summary import SUMMARY_FILE, Row, exit_code, summary_table, write_csv

log = logging.getLogger(__name__)
# The prepare step's result: its split folders by name, once it has finished.
PreparedSplits = Callable[[], dict[str, Path]]
FAILED_FILE = "FAILED"


@dataclass
class RunState:
    """What one ``launch`` shares with the Hydra callbacks and the job wrapper it runs.

    Hydra builds the callbacks from the config (``hydra.callbacks``), so they cannot be
    handed this object: ``launch`` sets it in ``_RUN`` for as long as the app runs, and
    they read it with ``current_run()``. Jobs in a multirun's worker processes see a
    fresh one: what they would record there concerns only their own process.
    """

    # The entrypoint's own checks of every run's config (local tuning: the search).
    extra_checks: tuple[Callable[[DictConfig], None], ...] = ()
    # Folders to clear of staging folders if the run is interrupted (added as runs start).
    cleanup_roots: list[Path] = field(default_factory=list)
    # The multirun summary's exit code: 0, 1 (a job failed unexpectedly) or 2.
    sweep_exit: int = 0


_RUN: ContextVar[RunState] = ContextVar("local_run")


def current_run() -> RunState:
    """The state of the ``launch`` running now; outside one, a fresh state of no run."""
    try:
        return _RUN.get()
    except LookupError:
        return RunState()


def run(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Run the three steps with all outputs under ``out``; return the metrics."""
    from steps.runtime.io import staged_outputs

    require_complete(cfg)
    check_config(cfg)
    with staged_outputs(out) as stage:
        (stage / CONFIG_FILE).write_text(to_yaml(cfg))
    with prepared_ahead(cfg, out / "data") as prepared:
        # Imported here, so that a bad override fails before these libraries load;
        # the plots' and the split reader's libraries too, while the data is prepared.
        import pyarrow.parquet  # noqa: F401

        import steps.plots  # noqa: F401
        from steps.evaluate import evaluate
        from steps.train import train

        speed.resume_collector()
    splits = prepared()
    train(cfg, splits["train"], splits["validation"], out / "model")
    metrics = evaluate(cfg, out / "model", splits["test"], out, validation_dir=splits["validation"])
    print(summary_table([(cfg.model.name, metrics)]), flush=True)
    print(f"Outputs: {out}", flush=True)
    return metrics


def prepared_ahead(cfg: DictConfig, data_dir: Path) -> AbstractContextManager[PreparedSplits]:
    """The prepare step, run ahead while the block loads what training and evaluation need.

    The block yields a function that returns the step's split folders once the block
    has ended; the step's error is raised as the block ends (``speed.run_ahead``: a
    forked child where that is safe and the speed-ups are on, otherwise first, here).
    """
    from steps.prepare import prepare

    return speed.run_ahead(prepare, cfg, data_dir)


# ------------------------------------------------------------------- the job wrapper


def guarded(task: Callable[[DictConfig, Path], Any]) -> Callable[[DictConfig], Any]:
    """Run ``task(cfg, output folder)`` as a Hydra job; report failures without a traceback.

    A ``UserError`` is one paragraph on stderr and in the run's log. Every failure
    writes ``FAILED`` (the reason) into the run folder. In a single run a user error
    exits 2 (anything else propagates); in a multirun the job returns ``None`` so that
    the other jobs go on.
    """

    def wrapper(cfg: DictConfig) -> Any:
        hydra_cfg = HydraConfig.get()
        out = Path(hydra_cfg.runtime.output_dir)
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        install_log_redaction()
        current_run().cleanup_roots.append(out)
        if multirun:
            watch_parent()
        try:
            with signals_raise():
                return task(cfg, out)
        except Interrupted as err:
            mark_failed(out, "interrupted")
            if multirun:  # a worker stopped by its parent: cleaned up, end at once
                logging.shutdown()
                os._exit(err.exit_code)
            raise
        except UserError as err:
            _report(out, str(err), job=hydra_cfg.job.num if multirun else None)
            if multirun:
                return None
            sys.exit(2)
        except Exception as err:
            reason = f"Unexpected error ({type(err).__name__}: {' '.join(str(err).split())})"
            mark_failed(out, reason)
            if not multirun:
                raise
            _report(out, f"{reason}; the traceback is in the job's log", hydra_cfg.job.num, err)
            return None

    wrapper.__name__ = task.__name__
    wrapper.__doc__ = task.__doc__
    return wrapper


def mark_failed(out: Path, reason: str) -> None:
    """Write ``FAILED`` with the reason into the run folder (best effort: disk may be full)."""
    with contextlib.suppress(OSError):
        (out / FAILED_FILE).write_text(redact(" ".join(reason.split())) + "\n")


def _report(out: Path, reason: str, job: int | None, exc: BaseException | None = None) -> None:
    """One paragraph on stderr, the reason (and traceback) in the run's log file, ``FAILED``."""
    mark_failed(out, reason)
    report(f"job {job}: {reason}" if job is not None else reason)
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (reason,), exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


# -------------------------------------------------------------------------- multirun


class SweepSummary(Callback):
    """At the end of a multirun, print and save a table of every job with its status."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        current_run().cleanup_roots.append(Path(config.hydra.sweep.dir))
        speed.resume_collector()  # the jobs load their libraries in their own processes

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows: list[Row] = []
        jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
        for job in sorted(jobs, key=_job_number):
            overrides = job / ".hydra" / "overrides.yaml"
            label = " ".join(OmegaConf.load(overrides)) if overrides.exists() else ""
            metrics: dict[str, Any] = {}
            if (job / METRICS_FILE).is_file():
                metrics = json.loads((job / METRICS_FILE).read_text())
            else:
                failed = job / FAILED_FILE
                reason = failed.read_text().strip() if failed.is_file() else "no metrics written"
                metrics["error"] = reason
            rows.append((label or job.name, metrics))
        current_run().sweep_exit = exit_code(rows)
        if not rows:
            return
        from steps.runtime.io import staged_outputs

        with staged_outputs(sweep_dir) as stage, open(stage / SUMMARY_FILE, "w", newline="") as f:
            write_csv(f, rows)
        print(summary_table(rows), flush=True)
        print(f"Summary: {sweep_dir / SUMMARY_FILE}", flush=True)


def _job_number(path: Path) -> int:
    return int(path.name) if path.name.isdigit() else sys.maxsize


# ------------------------------------------------------------------------- preflight


def preflight(
    argv: Sequence[str], extra_checks: Sequence[Callable[[DictConfig], None]] = ()
) -> None:
    """Check every run's config and the output folder before Hydra writes anything.

    A multirun's jobs are checked here; a single run's config, once Hydra has composed
    it (``RunChecks``). Raises a ``UserError``. Hydra's informational flags (``--help``,
    ``--cfg``, ...) skip it.
    """
    command = read_command_line(argv)
    if command.informational or command.other_config:
        return
    overrides = list(command.overrides)
    if not command.multirun:
        # Composed once, by Hydra: ``RunChecks`` checks it before the run writes anything.
        try:
            check_runtime_overrides(overrides)
        except HydraException as err:
            raise ConfigError(f"Invalid overrides {' '.join(overrides)!r}: {err}") from None
        return
    try:
        jobs = sweep_jobs(overrides)
    except HydraException as err:
        raise ConfigError(f"Invalid overrides {' '.join(overrides)!r}: {err}") from None
    for number, job in enumerate(jobs):
        try:
            check_run(compose_checked(job), extra_checks)
        except UserError as err:
            if len(jobs) == 1:
                raise
            raise type(err)(f"Job {number} ({' '.join(job)}) of the multirun: {err}") from None
    check_sweep_folder(jobs[0])


def check_run(cfg: DictConfig, extra_checks: Sequence[Callable[[DictConfig], None]]) -> None:
    """One run's config: complete, the checks of every job, and the entrypoint's own."""
    require_complete(cfg)
    check_config(cfg)
    for check in extra_checks:
        check(cfg)


class RunChecks(Callback):
    """A single run's checks, on the config Hydra composed, before the run writes anything.

    A refused run ends here: its error is one line (``report``) and the program exits 2
    (``SystemExit``, which ``launch`` returns as its exit code). Hydra 1.3 gives a
    callback no way to stop a run: it turns an ``Exception`` raised by one into a warning
    and goes on to write the run's folder.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        cfg = copy.deepcopy(config)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            check_run(cfg, current_run().extra_checks)
            check_folder(Path(str(config.hydra.run.dir)).expanduser(), "hydra.run.dir")
        except UserError as err:
            raise SystemExit(report(err)) from None


def check_sweep_folder(overrides: Sequence[str]) -> None:
    """A multirun's sweep folder must be new or empty, and its disk writable with space."""
    from hydra import compose, initialize_config_dir

    key = "hydra.sweep.dir"
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            hcfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        folder = Path(str(OmegaConf.select(hcfg, key))).expanduser()
    except Exception:  # a folder pattern only Hydra's own run can resolve: Hydra checks it
        return
    finally:
        GlobalHydra.instance().clear()
    check_folder(folder, key)


def check_folder(folder: Path, key: str) -> None:
    """``folder`` (the value of ``key``) must be new or empty, on a writable disk with space."""
    from conf.errors import OutputExistsError

    if folder.is_dir() and any(folder.iterdir()):
        raise OutputExistsError(
            f"{key}='{folder}' already exists and is not empty: choose a new or empty folder "
            "(the default, a new time-stamped folder under outputs/, always is)."
        )
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{key}='{folder}' is a file: choose a folder.")
    _check_writable(folder)


def _check_writable(folder: Path, probe_bytes: int = 1 << 20) -> None:
    """Write and delete ``probe_bytes`` next to ``folder`` (its nearest existing ancestor)."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(existing))
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-check-") as probe:
            probe.write(b"\0" * probe_bytes)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        from steps.runtime.io import unwritable

        raise unwritable(folder, exc) from None


# ------------------------------------------------------------------------------ main


def launch(app: Callable[[], Any], extra_check: Callable[[DictConfig], None] | None = None) -> int:
    """Preflight, then the Hydra app; return the exit code (exits at once when interrupted).

    A user error, or a config error Hydra raises itself, is one paragraph and exit 2.
    The app's ``SystemExit`` (a refused or failed single run, Hydra's ``--help``) is
    returned as the exit code. The run's state lives in a ``RunState`` for as long as
    this call.
    """
    # Without this, Hydra prints its own report and exits 1 whatever the error.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    speed.pause_collector()  # until the run has loaded its libraries (``run``)
    register_schemas()
    state = RunState(extra_checks=(extra_check,) if extra_check else ())
    token = _RUN.set(state)
    try:
        with signals_raise():
            try:
                preflight(sys.argv[1:], state.extra_checks)
                app()
            except (UserError, HydraException, OmegaConfBaseException) as err:
                return report(str(err) if isinstance(err, UserError) else user_message(err))
            except SystemExit as stop:
                return _exit_code(stop)
    except Interrupted as err:
        exit_interrupted(err, state.cleanup_roots)
    finally:
        _RUN.reset(token)
        speed.resume_collector()
    return state.sweep_exit


def _exit_code(stop: SystemExit) -> int:
    """The exit code ``sys.exit`` would give the process for ``stop``."""
    if stop.code is None or isinstance(stop.code, int):
        return stop.code or 0
    print(stop.code, file=sys.stderr, flush=True)
    return 1


@hydra.main(config_path="../../conf", config_name="config", version_base="1.3")
@guarded
def hydra_main(cfg: DictConfig, out: Path) -> float:
    """Local run; returns the validation deviance (the value sweeps compare)."""
    metrics = run(cfg, out)
    return metrics["validation"]["poisson_deviance"]


def main() -> None:
    """``python -m pipelines.local.run [-m] [overrides]``."""
    speed.exit_now(launch(hydra_main))


if __name__ == "__main__":
    # Run as the importable module, so that the callbacks Hydra builds find the state
    # ``launch`` set (``current_run``): ``__main__`` would hold a second ``_RUN``.
    from pipelines.local.run import main as _main

    _main()
