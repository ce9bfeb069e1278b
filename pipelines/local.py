"""``make local-run``: prepare -> train -> evaluate in one process, in Hydra's run folder.

Single runs and multiruns (``-m model.max_leaf_nodes=32,128``) share this
entrypoint; a multirun ends with a summary table across its runs.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from conf import CONFIG_FILE, run_main, to_yaml, user_message, validate
from steps.contract import METRICS_FILE
from steps.errors import UserError, require_complete

log = logging.getLogger(__name__)
SUMMARY_COLUMNS = ("poisson_deviance", "d2", "gini", "baseline_poisson_deviance", "d2_ratio")


def run(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Run the three steps with all outputs under ``out``; return the metrics."""
    # Imported here, so that a bad override fails before scikit-learn is loaded.
    from steps.evaluate import evaluate
    from steps.io import staged_outputs
    from steps.prepare import prepare
    from steps.train import train

    require_complete(cfg)
    with staged_outputs(out) as stage:
        (stage / CONFIG_FILE).write_text(to_yaml(cfg))
    splits = prepare(cfg, out / "data")
    train(cfg, splits["train"], splits["validation"], out / "model")
    metrics = evaluate(cfg, out / "model", splits["test"], out, validation_dir=splits["validation"])
    print(summary_table([(cfg.model.name, metrics)]), flush=True)
    print(f"Outputs: {out}", flush=True)
    return metrics


def summary_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A plain-text table of test metrics, one row per run."""
    header = ["run", *SUMMARY_COLUMNS]
    lines = [header]
    for label, metrics in rows:
        test = metrics.get("test", {})
        lines.append([label, *(f"{test[c]:.6f}" if c in test else "-" for c in SUMMARY_COLUMNS)])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "test metrics\n" + "\n".join(text)


def guarded(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Report a ``UserError`` as one paragraph and exit non-zero, without a traceback."""

    def wrapper(cfg: DictConfig) -> Any:
        try:
            # The schema's checks beyond Hydra's own (keys added with +, the search space).
            validate(cfg)
            return task(cfg)
        except (UserError, ConfigCompositionException) as err:
            # Once on stderr for the user, once in the run's log file (not twice on screen).
            text = user_message(err) if isinstance(err, ConfigCompositionException) else err
            print(f"error: {text}", file=sys.stderr, flush=True)
            record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (err,), None)
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.FileHandler):
                    handler.handle(record)
            sys.exit(2)

    wrapper.__name__ = task.__name__
    wrapper.__doc__ = task.__doc__
    return wrapper


class SweepSummary(Callback):
    """At the end of a multirun, print and save a table across its runs."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = []
        for metrics_file in sorted(sweep_dir.glob(f"*/{METRICS_FILE}"), key=_job_number):
            overrides = metrics_file.parent / ".hydra" / "overrides.yaml"
            label = " ".join(OmegaConf.load(overrides)) if overrides.exists() else ""
            rows.append((label or metrics_file.parent.name, json.loads(metrics_file.read_text())))
        if not rows:
            return
        from steps.io import staged_outputs

        with staged_outputs(sweep_dir) as stage, open(stage / "summary.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["run", *SUMMARY_COLUMNS])
            for label, metrics in rows:
                writer.writerow([label, *(metrics["test"].get(c, "") for c in SUMMARY_COLUMNS)])
        print(summary_table(rows), flush=True)
        print(f"Summary: {sweep_dir / 'summary.csv'}", flush=True)


def _job_number(path: Path) -> int:
    name = path.parent.name
    return int(name) if name.isdigit() else sys.maxsize


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
@guarded
def main(cfg: DictConfig) -> float:
    """Local run; returns the validation deviance (the value sweeps compare)."""
    metrics = run(cfg, Path(HydraConfig.get().runtime.output_dir))
    return metrics["validation"]["poisson_deviance"]


if __name__ == "__main__":
    run_main(main)
