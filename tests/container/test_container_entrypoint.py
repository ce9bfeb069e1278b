"""The image's job contract, exercised by running the real entrypoint as a subprocess.

The happy-path jobs run once per module and chain like the pipeline does:
prepare -> train (tuning-style hyperparameters) -> evaluate (model.tar.gz).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
import yaml

from conf.channel import write_channel
from conf.contract import METRIC_REGEX, MODEL_FILE, SPLITS, OptMl
from container import entrypoint

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = "data.n_rows=3000"
# What the pipeline would upload at upsert: a config channel with its overrides.
CHANNEL_OVERRIDES = ["model.learning_rate=0.2", "evaluation.calibration_bins=10"]
# The processing job arguments as the pipeline definition passes them.
PROCESSING_ARGS = (f"--overrides={SMALL}", "--input-data-uri=none")
TUNING_HYPERPARAMETERS = {
    "overrides": json.dumps(SMALL),  # the SDK may JSON-encode string values
    "input_data_uri": "none",
    "model.max_leaf_nodes": "16",
    "_tuning_objective_metric": "validation:poisson_deviance",
    "sagemaker_container_log_level": "20",
    "sagemaker_job_name": "tuning-job-001",
}


@dataclass
class Job:
    """One finished entrypoint run."""

    root: Path
    returncode: int
    stdout: str
    stderr: str

    def failure(self) -> str:
        path = self.root / "output" / "failure"
        return path.read_text() if path.is_file() else ""

    def output_files(self) -> list[Path]:
        """Files a job published (everything but the failure report and its inputs)."""
        folders = (self.root / "model", self.root / "processing" / "output")
        return sorted(p for f in folders if f.is_dir() for p in f.rglob("*") if p.is_file())


def run_job(root: Path, *args: str, channel: bool = True) -> Job:
    """``python -m container.entrypoint ARGS`` with ``OPT_ML_ROOT=root``.

    Unless the tree has one (or ``channel`` is false), the job gets a config
    channel of the packaged config, as every tool that runs the image provides.
    """
    root.mkdir(parents=True, exist_ok=True)
    job = args[0] if args else ""
    folder = OptMl(root).channel("config") if job == "train" else None
    if job in ("prepare", "evaluate"):
        folder = OptMl(root).processing_input("config")
    if channel and folder is not None and not folder.exists():
        write_channel(folder, [])
    env = {**os.environ, "OPT_ML_ROOT": str(root)}
    result = subprocess.run(
        [sys.executable, "-m", "container.entrypoint", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Job(root, result.returncode, result.stdout, result.stderr)


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config channel as the pipeline builder writes it."""
    folder = tmp_path_factory.mktemp("channel") / "config"
    write_channel(folder, CHANNEL_OVERRIDES)
    return folder


@pytest.fixture(scope="module")
def prepare_job(tmp_path_factory: pytest.TempPathFactory, channel: Path) -> Job:
    root = tmp_path_factory.mktemp("prepare") / "opt-ml"
    copy_tree(channel, root / "processing" / "input" / "config")
    return run_job(root, "prepare", *PROCESSING_ARGS)


@pytest.fixture(scope="module")
def train_job(tmp_path_factory: pytest.TempPathFactory, channel: Path, prepare_job: Job) -> Job:
    assert prepare_job.returncode == 0, prepare_job.stderr
    root = tmp_path_factory.mktemp("train") / "opt-ml"
    splits = prepare_job.root / "processing" / "output"
    for name in ("train", "validation"):
        copy_tree(splits / name, root / "input" / "data" / name)
    copy_tree(channel, root / "input" / "data" / "config")
    params = root / "input" / "config" / "hyperparameters.json"
    params.parent.mkdir(parents=True)
    params.write_text(json.dumps(TUNING_HYPERPARAMETERS))
    return run_job(root, "train")


@pytest.fixture(scope="module")
def evaluate_job(
    tmp_path_factory: pytest.TempPathFactory, channel: Path, prepare_job: Job, train_job: Job
) -> Job:
    assert train_job.returncode == 0, train_job.stderr
    root = tmp_path_factory.mktemp("evaluate") / "opt-ml"
    inputs = root / "processing" / "input"
    splits = prepare_job.root / "processing" / "output"
    for name in ("test", "validation"):
        copy_tree(splits / name, inputs / name)
    copy_tree(channel, inputs / "config")
    (inputs / "model").mkdir(parents=True)
    with tarfile.open(inputs / "model" / "model.tar.gz", "w:gz") as tar:
        for path in sorted((train_job.root / "model").iterdir()):
            tar.add(path, arcname=path.name)
    return run_job(root, "evaluate", *PROCESSING_ARGS)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The metric definitions the pipeline gives training and tuning jobs.
METRIC_DEFINITIONS = [
    {"Name": f"{split}:{name}", "Regex": METRIC_REGEX.format(split=split, name=name)}
    for split, name in (
        ("train", "poisson_deviance"),
        ("validation", "poisson_deviance"),
        ("validation", "d2"),
        ("validation", "gini"),
    )
]


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def assert_user_failure(job: Job, *phrases: str) -> str:
    """Exit 2, one paragraph in /opt/ml/output/failure naming the problem, no traceback."""
    assert job.returncode == 2, job.stdout + job.stderr
    reason = job.failure()
    assert reason.strip(), "no failure reason written"
    assert "\n" not in reason.strip(), reason
    assert "Traceback" not in job.stderr + reason
    for phrase in phrases:
        assert phrase in reason, reason
    assert (job.root / "output" / "message").read_text() == reason
    assert job.output_files() == [], "a failed job left outputs behind"
    return reason


# ------------------------------------------------------------------------ happy path


def test_prepare_job_writes_three_splits_with_their_config(prepare_job: Job) -> None:
    assert prepare_job.returncode == 0, prepare_job.stderr
    out = prepare_job.root / "processing" / "output"
    sizes = {}
    for name in SPLITS:
        sizes[name] = len(pd.read_parquet(out / name / "data.parquet"))
        cfg = load_yaml(out / name / "config.yaml")
        assert cfg["data"]["n_rows"] == 3000  # runtime override
        assert cfg["model"]["learning_rate"] == 0.2  # from the config channel
    assert sum(sizes.values()) == 3000
    assert sizes["train"] > sizes["test"] > sizes["validation"] > 0
    assert not (prepare_job.root / "output" / "failure").exists()
    assert not list(out.glob(".staging-*"))


def test_training_job_with_config_channel_and_tuned_hyperparameters(train_job: Job) -> None:
    assert train_job.returncode == 0, train_job.stderr
    model_dir = train_job.root / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.yaml", MODEL_FILE]
    cfg = load_yaml(model_dir / "config.yaml")
    assert cfg["model"]["max_leaf_nodes"] == 16  # tuned value, typed as an integer
    assert cfg["model"]["learning_rate"] == 0.2  # config channel
    assert cfg["data"]["n_rows"] == 3000  # JSON-encoded 'overrides' hyperparameter
    # The resolved config is logged at the start.
    assert "max_leaf_nodes: 16" in train_job.stdout


def test_training_job_metric_lines_match_the_pipeline_metric_definitions(train_job: Job) -> None:
    assert train_job.returncode == 0, train_job.stderr
    for definition in METRIC_DEFINITIONS:
        found = re.findall(definition["Regex"], train_job.stdout)
        assert len(found) == 1, (definition, train_job.stdout)
        assert math.isfinite(float(found[0])), found  # a number, as the regex promises
    deviance = re.search(METRIC_DEFINITIONS[1]["Regex"], train_job.stdout)
    assert deviance is not None and 0 < float(deviance.group(1)) < 5


def test_evaluation_job_writes_metrics_plots_and_model_quality(evaluate_job: Job) -> None:
    assert evaluate_job.returncode == 0, evaluate_job.stderr
    out = evaluate_job.root / "processing" / "output" / "evaluation"
    names = {p.name for p in out.iterdir()}
    assert names == {
        "metrics.json",
        "calibration.png",
        "lorenz.png",
        "model_quality.json",
        "config.yaml",
    }
    metrics = json.loads((out / "metrics.json").read_text())
    # The pipeline's PropertyFile reads these JSON paths.
    assert metrics["test"]["poisson_deviance"] > 0
    assert metrics["test"]["baseline_poisson_deviance"] > 0
    assert "validation" in metrics  # the optional validation input was used
    assert len(metrics["calibration"]) == 10  # evaluation.calibration_bins from the channel
    for plot in ("calibration.png", "lorenz.png"):
        assert (out / plot).read_bytes()[:8] == PNG_SIGNATURE
        pixels = matplotlib.image.imread(out / plot)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    quality = json.loads((out / "model_quality.json").read_text())["regression_metrics"]
    assert {"poisson_deviance", "mae", "mse", "rmse", "d2"} <= set(quality)
    assert quality["poisson_deviance"] == {
        "value": pytest.approx(metrics["test"]["poisson_deviance"]),
        "standard_deviation": "NaN",
    }
    assert quality["mae"]["value"] == pytest.approx(metrics["test"]["mae"])
    cfg = load_yaml(out / "config.yaml")
    # The model section is the one the model was trained with (the tuned value),
    # not the evaluation job's own default.
    assert cfg["model"]["max_leaf_nodes"] == 16
    assert cfg["evaluation"]["calibration_bins"] == 10


# --------------------------------------------------------------------------- failures


def test_missing_training_channel_fails_clearly(tmp_path: Path, prepare_job: Job) -> None:
    root = tmp_path / "opt-ml"
    copy_tree(prepare_job.root / "processing" / "output" / "train", root / "input/data/train")
    job = run_job(root, "train")
    assert_user_failure(job, "channel 'validation'", str(root / "input" / "data" / "validation"))


@pytest.mark.parametrize(
    ("damage", "phrases"),
    [
        (
            lambda c: (c / "conf" / "model" / "hgb_poisson.yaml").write_text("max_iter: [1, 2\n"),
            ("Could not compose", "config channel"),
        ),
        (lambda c: (c / "overrides.yaml").unlink(), ("has no overrides.yaml",)),
    ],
    ids=["corrupt-yaml", "no-overrides-file"],
)
def test_corrupt_config_channel_fails_clearly(
    tmp_path: Path, channel: Path, damage, phrases: tuple[str, ...]
) -> None:
    root = tmp_path / "opt-ml"
    damage(copy_tree(channel, root / "processing" / "input" / "config"))
    job = run_job(root, "prepare", "--overrides", SMALL)
    assert_user_failure(job, *phrases)


@pytest.mark.parametrize(
    ("hyperparameters", "phrases"),
    [
        (
            {"model.max_leaf_node": "16"},
            ("Unknown hyperparameter 'model.max_leaf_node'", "max_leaf_nodes"),
        ),
        ({"model.max_leaf_nodes": "many"}, ("'model.max_leaf_nodes'='many' is not an integer",)),
    ],
    ids=["unknown-key", "wrong-type"],
)
def test_bad_hyperparameter_fails_clearly(
    tmp_path: Path, prepare_job: Job, hyperparameters: dict, phrases: tuple[str, ...]
) -> None:
    root = tmp_path / "opt-ml"
    for name in ("train", "validation"):
        copy_tree(prepare_job.root / "processing" / "output" / name, root / "input/data" / name)
    params = root / "input" / "config" / "hyperparameters.json"
    params.parent.mkdir(parents=True)
    params.write_text(json.dumps({"overrides": SMALL, "_tuning": "x", **hyperparameters}))
    assert_user_failure(run_job(root, "train"), *phrases)


def test_bad_data_fails_clearly_without_outputs(tmp_path: Path, prepare_job: Job) -> None:
    frame = pd.read_parquet(prepare_job.root / "processing" / "output" / "train" / "data.parquet")
    frame.loc[frame.index[:5], "Exposure"] = 0.0
    csv = tmp_path / "claims.csv"
    frame.to_csv(csv, index=False)
    job = run_job(tmp_path / "opt-ml", "prepare", "--overrides", f"data=file data.path={csv}")
    assert_user_failure(job, "Exposure")


def test_unknown_command_fails_clearly(tmp_path: Path) -> None:
    assert_user_failure(run_job(tmp_path / "opt-ml", "predict"), "invalid choice: 'predict'")


def test_unreadable_model_archive_fails_clearly(tmp_path: Path, prepare_job: Job) -> None:
    root = tmp_path / "opt-ml"
    inputs = root / "processing" / "input"
    copy_tree(prepare_job.root / "processing" / "output" / "test", inputs / "test")
    (inputs / "model").mkdir()
    (inputs / "model" / "model.tar.gz").write_bytes(b"not a tar archive")
    job = run_job(root, "evaluate", "--overrides", SMALL)
    assert_user_failure(job, "Cannot unpack", "model.tar.gz")


def test_corrupt_model_file_exits_2_with_reason(
    tmp_path: Path, prepare_job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A corrupt model file in the input channel is a user error: exit 2, reason written."""
    root = tmp_path / "opt-ml"
    inputs = root / "processing" / "input"
    shutil.copytree(prepare_job.root / "processing" / "output" / "test", inputs / "test")
    write_channel(inputs / "config", [])
    garbage = tmp_path / MODEL_FILE
    garbage.write_bytes(b"\x80\x04garbage")
    (inputs / "model").mkdir(parents=True)
    with tarfile.open(inputs / "model" / "model.tar.gz", "w:gz") as tar:
        tar.add(garbage, arcname=MODEL_FILE)
    monkeypatch.setenv("OPT_ML_ROOT", str(root))
    assert entrypoint.main(["evaluate", "--overrides", SMALL]) == 2
    reason = (root / "output" / "failure").read_text()
    assert reason.startswith("Cannot read the model file")
    assert not list((root / "processing").glob("output/**/*.*"))


def test_prepare_job_reads_the_input_data_uri_from_s3(aws: str, tmp_path: Path) -> None:
    import boto3

    from steps.sources.simulate import generate

    frame = generate(1500, 11).drop(columns=["TrueFrequency"])
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="claims")
    s3.put_object(Bucket="claims", Key="in/policies.csv", Body=frame.to_csv(index=False).encode())
    root = tmp_path / "opt-ml"
    write_channel(root / "processing" / "input" / "config", [])
    job = run_job(root, "prepare", "--input-data-uri", "s3://claims/in/policies.csv")
    assert job.returncode == 0, job.stdout + job.stderr
    out = root / "processing" / "output"
    total = sum(len(pd.read_parquet(out / name / "data.parquet")) for name in SPLITS)
    assert total == 1500
    cfg = load_yaml(out / "train" / "config.yaml")
    assert cfg["data"]["source"] == "file"
    assert cfg["data"]["path"] == "s3://claims/in/policies.csv"


@pytest.mark.parametrize("job", ["prepare", "train"])
def test_a_job_without_its_config_channel_fails_naming_it(
    tmp_path: Path, prepare_job: Job, job: str
) -> None:
    """Never the config packaged in the image: the pipeline's config would be ignored."""
    root = tmp_path / "opt-ml"
    if job == "train":
        for name in ("train", "validation"):
            copy_tree(prepare_job.root / "processing" / "output" / name, root / "input/data" / name)
    result = run_job(root, job, channel=False)
    assert_user_failure(result, "no config channel 'config'")
    assert not result.output_files()
