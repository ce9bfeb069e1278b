"""``run-local``: run a job in the image on temporary /opt/ml trees, as SageMaker would.

Each job gets a tree of its own, and its inputs are what the jobs before it in
the pipeline wrote, run in the same image: ``train`` runs ``prepare`` first and
``evaluate`` runs ``prepare`` and ``train``. Between two jobs this module does
the platform's part: an output becomes the next job's input, and the training
job's model folder becomes ``model.tar.gz``. Every job reads a config channel
written as upsert writes it, and the overrides arrive as a pipeline start passes
them: a processing job's ``--overrides`` argument, a training job's ``overrides``
hyperparameter.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from conf.contract import (
    CONFIG_CHANNEL,
    EVALUATE,
    EVALUATION_OUTPUT,
    JOB,
    JOBS,
    MODEL_ARCHIVE,
    MODEL_INPUT,
    OVERRIDES_FLAG,
    OVERRIDES_KEY,
    PREPARE,
    SPLITS,
    TRAIN,
    UNSET,
    OptMl,
)
from infra.image.engine import REPO_ROOT, Engine, ImageError, image_labels, run_command

# run-local prepares small synthetic data unless the overrides say otherwise.
RUN_LOCAL_DEFAULTS = ("data.n_rows=20000",)
# What each job reads from the prepare job's splits.
SPLITS_READ = {TRAIN: ("train", "validation"), EVALUATE: ("test", "validation")}


def chain(job: str) -> tuple[str, ...]:
    """``job`` and the jobs before it in the pipeline, in the order they run."""
    return JOBS[: JOBS.index(job) + 1]


def start_value(overrides: Sequence[str]) -> str:
    """The overrides as one start-time value, as the ``HydraOverrides`` parameter holds them."""
    return shlex.join(overrides) or UNSET


def job_arguments(job: str, overrides: Sequence[str]) -> list[str]:
    """The container's arguments: ``train`` alone, or a processing job's command and flag."""
    if job == TRAIN:
        return [TRAIN]
    return [job, f"{OVERRIDES_FLAG}={start_value(overrides)}"]


def lay_out(
    tree: Path, job: str, channel: Path, overrides: Sequence[str], upstream: Mapping[str, Path]
) -> None:
    """Make ``job``'s /opt/ml tree: its config channel, inputs from the trees of the jobs
    before it, empty outputs.

    ``upstream`` maps each job that ran before to its tree.
    """
    local = OptMl(tree)
    local.failure.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        channel,
        local.channel(CONFIG_CHANNEL) if job == TRAIN else local.processing_input(CONFIG_CHANNEL),
    )
    if job == PREPARE:
        for split in SPLITS:
            local.processing_output(split).mkdir(parents=True)
        return
    prepared = OptMl(upstream[PREPARE])
    if job == TRAIN:
        for name in SPLITS_READ[TRAIN]:
            handover(prepared.processing_output(name), local.channel(name))
        local.hyperparameters.parent.mkdir(parents=True)
        params = {OVERRIDES_KEY: start_value(overrides)}
        local.hyperparameters.write_text(json.dumps(params) + "\n")
        local.model.mkdir()
        return
    for name in SPLITS_READ[job]:
        handover(prepared.processing_output(name), local.processing_input(name))
    model = local.processing_input(MODEL_INPUT)
    model.mkdir(parents=True)
    pack_model(OptMl(upstream[TRAIN]).model, model / MODEL_ARCHIVE)
    local.processing_output(EVALUATION_OUTPUT).mkdir(parents=True)


def handover(output: Path, target: Path) -> None:
    """Copy a job's output folder to the next job's input, as the platform does through S3."""
    if not any(p.is_file() for p in output.rglob("*")):
        raise ImageError(f"The job before wrote nothing to {output}: its input is missing.")
    shutil.copytree(output, target)


def pack_model(model: Path, archive: Path) -> None:
    """The training job's model folder as ``model.tar.gz``, its files at the top level."""
    files = sorted(model.iterdir()) if model.is_dir() else []
    if not files:
        raise ImageError(f"The training job wrote no model to {model}.")
    with tarfile.open(archive, "w:gz") as tar:
        for path in files:
            tar.add(path, arcname=path.name)


def job_mounts(tree: Path) -> list[tuple[Path, str]]:
    """Each folder a job declares, its own mount, as SageMaker's local mode does it.

    Processing inputs and outputs, training channels, the hyperparameters
    folder, the model folder and the output (failure) folder.
    """
    local = OptMl(tree)
    folders = [local.processing_input(""), local.processing_outputs, local.channel("")]
    mounts = [
        (p, str(JOB.root / p.relative_to(tree)))
        for folder in folders
        if folder.is_dir()
        for p in sorted(folder.iterdir())
    ]
    singles = (local.hyperparameters.parent, local.model, local.failure.parent)
    mounts += [(f, str(JOB.root / f.relative_to(tree))) for f in singles if f.is_dir()]
    return mounts


def run_job(
    engine: Engine, image: str, tree: Path, args: Sequence[str], platform: str | None
) -> int:
    """Run one job in the image on its tree, as the caller; return its exit code."""
    user = f"{os.getuid()}:{os.getgid()}" if hasattr(os, "getuid") else None
    cmd = run_command(engine, image, job_mounts(tree), args, user=user, platform=platform)
    print("+", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=REPO_ROOT, check=False).returncode
    failure = OptMl(tree).failure
    if code != 0 and failure.is_file():
        print(f"Job failed (exit {code}): {failure.read_text().strip()}", flush=True)
    return code


def outputs(tree: Path) -> list[str]:
    """The files a job wrote, relative to its tree."""
    local = OptMl(tree)
    return sorted(
        str(p.relative_to(tree))
        for folder in (local.model, local.processing_outputs)
        for p in folder.rglob("*")
        if p.is_file()
    )


def run_local(
    engine: Engine, image: str, job: str, overrides: Sequence[str], platform: str | None
) -> int:
    """Run ``job`` in ``image`` after the jobs it needs, each on a fresh /opt/ml tree.

    Returns the exit code of the first job that fails, else 0. The trees are kept.
    """
    from conf.channel import write_channel

    image_labels(engine, image)  # a clear error if it was never built
    folder = Path(tempfile.mkdtemp(prefix=f"opt-ml-{job}-"))
    # The config channel every job reads, as a pipeline's upsert writes it.
    channel = folder / CONFIG_CHANNEL
    write_channel(channel, [])
    trees: dict[str, Path] = {}
    code = 0
    for step in chain(job):
        tree = folder / step
        lay_out(tree, step, channel, overrides, trees)
        trees[step] = tree
        print(f"Running '{step}' in {image} on {tree}", flush=True)
        code = run_job(engine, image, tree, job_arguments(step, overrides), platform)
        if code != 0:
            break
    last = list(trees.values())[-1]
    print("Outputs:\n  " + "\n  ".join(outputs(last) or ["(none)"]), flush=True)
    for step, tree in trees.items():
        print(f"{step}: the /opt/ml tree is kept at {tree}", flush=True)
    return code
