"""infra.image run-local: a job runs in the image after the jobs that make its inputs.

The engine is the stand-in of ``tests/infra/standin_engine.py``: it logs each
command line and runs the job with the image's entrypoint on this host, each
mount a folder of its own. tests/image runs the same command with the real image.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conf.contract import METRICS_FILE, MODEL_FILE, OVERRIDES_KEY, TRAIN, UNSET
from infra.image import cli, run_local, tag
from tests.infra.standin_engine import calls, mounts_of, write_tool

# The jobs run for real (a few seconds each).
pytestmark = pytest.mark.slow

USER = f"{os.getuid()}:{os.getgid()}"
IMAGE = "claim-frequency:0123456789ab"  # built from a clean source, named by the config
PROCESSING_OUTPUTS = {f"/opt/ml/processing/output/{s}" for s in ("train", "validation", "test")}


@dataclass(frozen=True)
class Run:
    """What one ``run-local`` did: its exit code, what it printed, the engine's command lines."""

    code: int
    out: str
    calls: list[dict]

    @property
    def jobs(self) -> dict[str, list[str]]:
        """The arguments of each ``run`` the engine was asked for, by job, in order."""
        runs = [c["args"] for c in self.calls if c["args"][0] == "run"]
        return {args[args.index("--user") + 3]: args for args in runs}


@contextlib.contextmanager
def run_with_standin(tmp: Path, argv: list[str]) -> Iterator[Run]:
    """``python -m infra.image run-local ARGV`` with the stand-in engine, from a clean source.

    The folder run-local keeps for the user goes when the block ends.
    """
    log, out = tmp / "tool.log", io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setenv("CONTAINER_TOOL", str(write_tool(tmp / "fake-docker", log)))
        patch.setattr(cli, "source_tag", lambda: tag.SourceTag("0123456789ab", False))
        code = cli.main(["run-local", *argv])
    run = Run(code, out.getvalue(), calls(log))
    try:
        yield run
    finally:
        for args in run.jobs.values():
            shutil.rmtree(mounts_of(args)["/opt/ml/output"].parents[1], ignore_errors=True)


@pytest.fixture(scope="module")
def evaluate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """``run-local evaluate`` once: prepare, train and evaluate, run in that order."""
    tmp = tmp_path_factory.mktemp("run-local")
    with run_with_standin(tmp, ["evaluate", "data.n_rows=2000", "model=glm_poisson"]) as run:
        yield run


def test_each_job_runs_offline_as_the_caller_in_the_image_this_source_names(
    evaluate: Run,
) -> None:
    assert evaluate.code == 0
    inspect = evaluate.calls[0]["args"]
    assert inspect[:2] == ["image", "inspect"] and inspect[-1] == IMAGE
    assert list(evaluate.jobs) == ["prepare", "train", "evaluate"]
    for args in evaluate.jobs.values():
        assert args[args.index("--network") + 1] == "none"
        assert args[args.index("--user") + 1] == USER
        assert args[args.index("--user") + 2] == IMAGE


def test_prepare_and_evaluate_take_the_overrides_as_a_pipeline_start_passes_them(
    evaluate: Run,
) -> None:
    prepare, evaluation = evaluate.jobs["prepare"], evaluate.jobs["evaluate"]
    flag = "--overrides=data.n_rows=2000 model=glm_poisson"
    assert prepare[-2:] == ["prepare", flag]
    assert evaluation[-2:] == ["evaluate", flag]
    assert set(mounts_of(prepare)) == {
        "/opt/ml/processing/input/config",  # every job gets its config channel
        *PROCESSING_OUTPUTS,
        "/opt/ml/output",
    }


def test_train_gets_the_splits_prepare_wrote_and_the_single_argument_train(
    evaluate: Run,
) -> None:
    train = evaluate.jobs["train"]
    assert train[-1] == "train"
    mounts = mounts_of(train)
    assert set(mounts) == {
        "/opt/ml/input/data/config",
        "/opt/ml/input/data/train",
        "/opt/ml/input/data/validation",
        "/opt/ml/input/config",
        "/opt/ml/model",
        "/opt/ml/output",
    }
    channel = mounts["/opt/ml/input/data/train"]
    written = mounts_of(evaluate.jobs["prepare"])["/opt/ml/processing/output/train"]
    assert (channel / "data.parquet").read_bytes() == (written / "data.parquet").read_bytes()
    assert "n_rows: 2000" in (channel / "config.yaml").read_text()  # the config prepare ran
    params = json.loads((mounts["/opt/ml/input/config"] / "hyperparameters.json").read_text())
    assert params == {OVERRIDES_KEY: "data.n_rows=2000 model=glm_poisson"}
    assert (mounts["/opt/ml/model"] / MODEL_FILE).is_file()


def test_evaluate_gets_the_trained_model_as_an_archive(evaluate: Run) -> None:
    mounts = mounts_of(evaluate.jobs["evaluate"])
    assert set(mounts) == {
        "/opt/ml/processing/input/config",
        "/opt/ml/processing/input/model",
        "/opt/ml/processing/input/test",
        "/opt/ml/processing/input/validation",
        "/opt/ml/processing/output/evaluation",
        "/opt/ml/output",
    }
    model = mounts_of(evaluate.jobs["train"])["/opt/ml/model"]
    with tarfile.open(mounts["/opt/ml/processing/input/model"] / "model.tar.gz") as tar:
        assert sorted(tar.getnames()) == sorted(p.name for p in model.iterdir())
    evaluation = mounts["/opt/ml/processing/output/evaluation"]
    metrics = json.loads((evaluation / METRICS_FILE).read_text())
    assert metrics["test"]["poisson_deviance"] > 0
    for job, args in evaluate.jobs.items():
        tree = mounts_of(args)["/opt/ml/output"].parent
        assert f"{job}: the /opt/ml tree is kept at {tree}" in evaluate.out
    assert "processing/output/evaluation/metrics.json" in evaluate.out


def test_the_first_failing_job_ends_the_run_with_its_reason(tmp_path: Path) -> None:
    argv = ["--image", "claims:t1", "evaluate", "model.max_leaf_nodez=3"]
    with run_with_standin(tmp_path, argv) as run:
        assert run.code == 2
        assert list(run.jobs) == ["prepare"]  # neither train nor evaluate ran
        assert run.jobs["prepare"][-3] == "claims:t1"
        assert "Job failed (exit 2): " in run.out and "max_leaf_nodez" in run.out
        assert "prepare: the /opt/ml tree is kept at" in run.out
        assert "train: the /opt/ml tree" not in run.out


def test_job_arguments_carry_the_overrides_whole() -> None:
    overrides = ["data.n_rows=2000", "sagemaker.tags.team='claims and pricing'"]
    command, flag = run_local.job_arguments("prepare", overrides)
    assert command == "prepare" and flag.startswith("--overrides=")
    assert shlex.split(flag.removeprefix("--overrides=")) == overrides
    assert run_local.job_arguments("evaluate", []) == ["evaluate", f"--overrides={UNSET}"]
    assert run_local.job_arguments(TRAIN, overrides) == [TRAIN]  # hyperparameters carry them
    assert run_local.chain("evaluate") == ("prepare", "train", "evaluate")
