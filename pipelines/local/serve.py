"""``make serve-local``: serve a trained model on this machine, as SageMaker hosting would.

The model is the newest successful local run's by default, or the one
``--model`` names: a local run folder, a model folder, a ``model.tar.gz``, or a
local pipeline execution (its folder or id under ``outputs/pipelines``). It is
laid out as the platform lays out ``/opt/ml/model`` (an archive unpacked, the
training config beside the model), loaded once here so that a model that cannot
be served is named as the user named it, and the image's own command serves it:
``python -m container.entrypoint serve`` with ``OPT_ML_ROOT`` on that tree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conf.contract import (
    CONFIG_FILE,
    ENTRYPOINT,
    LEGACY_MODEL_FILE,
    METRICS_FILE,
    MODEL_ARCHIVE,
    MODEL_FILE,
)
from conf.errors import DataError, UserError, report
from steps.runtime.io import extract_safely

if TYPE_CHECKING:
    from steps.score import Scorer

RUNS = Path("outputs/runs")
PIPELINES = Path("outputs/pipelines")
EXECUTION_RECORD = "execution.json"


def newest_run(runs: Path = RUNS) -> Path:
    """The newest local run folder that finished (model and metrics written)."""
    folders = sorted((p for p in Path(runs).glob("*") if p.is_dir()), reverse=True)
    for folder in folders:
        if (folder / "model" / MODEL_FILE).is_file() and (folder / METRICS_FILE).is_file():
            return folder
    raise DataError(
        f"No successful local run in '{runs}': run `make local-run` first, or name a model "
        "with --model (a run folder, a model folder, a model.tar.gz or a local pipeline "
        "execution)."
    )


def execution_model(folder: Path) -> Path:
    """The model.tar.gz a local pipeline execution registered (or trained)."""
    record_file = folder / EXECUTION_RECORD
    try:
        record = json.loads(record_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"Cannot read the local pipeline execution record '{record_file}' "
            f"({' '.join(str(exc).split())}): it is truncated or not JSON; run the pipeline "
            "again, or name a model with --model."
        ) from None
    if not isinstance(record, dict):
        raise DataError(
            f"The local pipeline execution record '{record_file}' is not a JSON object: run the "
            "pipeline again, or name a model with --model."
        )
    urls = _values(record, "ModelDataUrl") or _values(record, "S3ModelArtifacts")
    urls = [u for u in urls if isinstance(u, str) and u.startswith("s3://")]
    if not urls:
        status = record.get("PipelineExecutionStatus", "unknown")
        raise DataError(
            f"The local pipeline execution '{folder}' has no trained model (status {status})."
        )
    bucket_key = urls[0].removeprefix("s3://")
    store = folder.parent / "s3"
    path = store / bucket_key
    if not path.resolve().is_relative_to(store.resolve()):
        raise DataError(f"The execution's model {urls[0]} is outside the local store '{store}'.")
    if not path.is_file():
        raise DataError(f"The execution's model {urls[0]} is not stored at '{path}'.")
    return path


def legacy_model(path: Path) -> DataError:
    """The error for a model saved as a pickle by an earlier version: retrain."""
    return DataError(
        f"'{path}' was saved by an earlier version as a pickle, which is not loaded because "
        f"unpickling can run arbitrary code. Retrain to get a {MODEL_FILE}: make local-run, or "
        "run the pipeline again."
    )


def _values(node: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a JSON document."""
    if isinstance(node, dict):
        found = [node[key]] if key in node else []
        return found + [v for child in node.values() for v in _values(child, key)]
    if isinstance(node, list):
        return [v for child in node for v in _values(child, key)]
    return []


def resolve(spec: str | None, runs: Path = RUNS, pipelines: Path = PIPELINES) -> Path:
    """What ``--model`` names, as a model folder or a model.tar.gz."""
    if not spec:
        return newest_run(runs) / "model"
    path = Path(spec).expanduser()
    if not path.exists() and (Path(pipelines) / spec / EXECUTION_RECORD).is_file():
        path = Path(pipelines) / spec
    if path.is_file():
        return path
    if (path / EXECUTION_RECORD).is_file():
        return execution_model(path)
    for candidate in (path, path / "model"):
        if (candidate / MODEL_FILE).is_file() or (candidate / MODEL_ARCHIVE).is_file():
            return candidate if (candidate / MODEL_FILE).is_file() else candidate / MODEL_ARCHIVE
    for candidate in (path, path / "model"):
        if (candidate / LEGACY_MODEL_FILE).is_file():
            raise legacy_model(candidate / LEGACY_MODEL_FILE)
    raise DataError(
        f"--model {spec!r} is not a local run folder, a model folder, a {MODEL_ARCHIVE} or a "
        f"local pipeline execution (folder or id under '{pipelines}')."
    )


@contextmanager
def model_tree(source: Path) -> Iterator[Path]:
    """A temporary ``/opt/ml``-shaped root whose ``model/`` holds ``source`` as SageMaker would."""
    with tempfile.TemporaryDirectory(prefix="opt-ml-") as tmp:
        root = Path(tmp)
        model = root / "model"
        model.mkdir()
        if source.is_file():
            try:
                with tarfile.open(source) as tar:
                    extract_safely(tar, model)
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DataError(f"Cannot unpack '{source}': {exc}") from exc
        else:
            shutil.copy2(source / MODEL_FILE, model / MODEL_FILE)
            for config in (source / CONFIG_FILE, source.parent / CONFIG_FILE):
                if config.is_file():
                    shutil.copy2(config, model / CONFIG_FILE)
                    break
        if not (model / MODEL_FILE).is_file():
            if (model / LEGACY_MODEL_FILE).is_file():
                raise legacy_model(source)
            raise DataError(f"'{source}' holds no {MODEL_FILE} at its top level.")
        yield root


def load_named(source: Path, root: Path) -> Scorer:
    """The model of a ``model_tree``; its errors name ``source``, not the temporary copy."""
    from steps.score import load_scorer

    model = root / "model"
    try:
        return load_scorer(model)
    except UserError as err:
        message = str(err)
        for name in (MODEL_FILE, CONFIG_FILE):
            copy = f"'{model / name}'"
            if source.is_file():  # an archive
                message = message.replace(copy, f"'{source}' (its {name})")
            else:
                original = source / name
                if name == CONFIG_FILE and not original.is_file():
                    original = source.parent / name
                message = message.replace(copy, f"'{original}'")
        raise type(err)(message.replace(str(model), str(source))) from None


def run_forwarding_signals(command: list[str], env: dict[str, str]) -> int:
    """Run the server; SIGTERM and SIGINT go to it, so it never outlives this process."""
    process = subprocess.Popen(command, env=env)

    def forward(signum: int, _: Any) -> None:
        if process.poll() is None:
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make serve-local ARGS=...", description=__doc__)
    parser.add_argument("--model", help="default: the newest successful run in outputs/runs")
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine)")
    parser.add_argument("--port", default="8080", help="default: 8080")
    parser.add_argument("--workers", default="2", help="default: 2")
    parser.add_argument("--timeout", default="60", help="seconds per request; default: 60")
    parser.add_argument("--max-payload-mb", default="6", help="default: 6; 0: no limit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        source = resolve(args.model)
        print(f"Model: {source}", flush=True)
        with model_tree(source) as root:
            load_named(source, root)
            command = [
                sys.executable,
                *ENTRYPOINT[1:],
                "serve",
                f"--host={args.host}",
                f"--port={args.port}",
                f"--workers={args.workers}",
                f"--timeout={args.timeout}",
                f"--max-payload-mb={args.max_payload_mb}",
            ]
            print(
                f"Try: curl -s -H 'Content-Type: text/csv' --data-binary @policies.csv "
                f"http://{args.host}:{args.port}/invocations",
                flush=True,
            )
            env = {**os.environ, "OPT_ML_ROOT": str(root)}
            return run_forwarding_signals(command, env)
    except UserError as err:
        return report(err)


if __name__ == "__main__":
    sys.exit(main())
