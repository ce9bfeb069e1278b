"""The job contract, tested in the built image as SageMaker starts it.

Prepare and Evaluate run as processing jobs with the ContainerEntrypoint and
ContainerArguments of the built pipeline definition; training runs with the
single argument ``train`` and the definition's (or a tuning job's)
hyperparameters. Every input and output folder the definition declares is its
own volume mount, as in SageMaker's local mode, and no container has a network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from conf import compose
from conf.contract import MODEL_FILE
from executor.service_rules import job_steps
from infra import image as tool
from tests.image.conftest import UPSERT

OPT_ML = "/opt/ml"
# Keys a tuning job adds to each training job's hyperparameters.
TUNER_KEYS = {
    "_tuning_objective_metric": "validation:poisson_deviance",
    "sagemaker_estimator_class_name": "ModelTrainer",
}


# ------------------------------------------------------------------ definitions


def steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every step by name, those nested in condition steps included."""
    return {step["Name"]: step for step in job_steps(definition)}


def resolve(value: Any, params: Mapping[str, str]) -> Any:
    """A definition value with its pipeline expressions evaluated, as the service does."""
    if isinstance(value, list):
        return [resolve(v, params) for v in value]
    if isinstance(value, dict) and "Get" in value:
        kind, _, name = value["Get"].partition(".")
        assert kind in ("Parameters", "Execution"), value
        return str(params[name]) if kind == "Parameters" else f"exec-{name.lower()}"
    if isinstance(value, dict) and "Std:Join" in value:
        join = value["Std:Join"]
        return join["On"].join(str(resolve(v, params)) for v in join["Values"])
    if isinstance(value, dict):
        return {k: resolve(v, params) for k, v in value.items()}
    return value


def parameters(definition: dict[str, Any], **given: str) -> dict[str, str]:
    """Each pipeline parameter's default value, with ``given`` values on top."""
    out = {p["Name"]: str(p.get("DefaultValue", "")) for p in definition["Parameters"]}
    unknown = set(given) - set(out)
    assert not unknown, f"no such pipeline parameters: {unknown}"
    return {**out, **given}


def without_empty(values: Mapping[str, str]) -> dict[str, str]:
    """The service drops a hyperparameter whose value is empty."""
    return {k: v for k, v in values.items() if v != ""}


# ------------------------------------------------------------------------- runs


def user() -> str | None:
    """SageMaker runs jobs as root; elsewhere run as the caller so the files stay theirs."""
    return None if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"


def run_job(
    engine: tool.Engine,
    image: str,
    mounts: dict[str, Path],
    args: list[str],
    entrypoint: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the image with each ``container path: host folder`` its own mount."""
    for folder in mounts.values():
        folder.mkdir(parents=True, exist_ok=True)
    pairs = [(host, path) for path, host in mounts.items()]
    cmd = tool.run_command(engine, image, pairs, args, entrypoint, user(), platform=None)
    assert cmd[cmd.index("--network") + 1] == "none"
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)


def processing_mounts(step: dict[str, Any], root: Path) -> dict[str, Path]:
    """A host folder per declared processing input and output, plus /opt/ml/output."""
    args = step["Arguments"]
    paths = [i["S3Input"]["LocalPath"] for i in args["ProcessingInputs"]]
    paths += [o["S3Output"]["LocalPath"] for o in args["ProcessingOutputConfig"]["Outputs"]]
    mounts = {path: root / path.removeprefix(f"{OPT_ML}/") for path in paths}
    mounts[f"{OPT_ML}/output"] = root / "output"
    return mounts


def run_processing(
    engine: tool.Engine, image: str, step: dict[str, Any], params: Mapping[str, str], root: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, Path]]:
    """Run a processing step's job exactly as its AppSpecification says."""
    app = step["Arguments"]["AppSpecification"]
    entrypoint = resolve(app["ContainerEntrypoint"], params)
    arguments = resolve(app.get("ContainerArguments", []), params)
    mounts = processing_mounts(step, root)
    return run_job(engine, image, mounts, arguments, entrypoint), mounts


def training_mounts(channels: list[str], root: Path) -> dict[str, Path]:
    mounts = {f"{OPT_ML}/input/data/{c}": root / "input" / "data" / c for c in channels}
    for rel in ("input/config", "model", "output"):
        mounts[f"{OPT_ML}/{rel}"] = root / rel
    return mounts


def run_training(
    engine: tool.Engine,
    image: str,
    channels: dict[str, Path],
    hyperparameters: Mapping[str, str],
    root: Path,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Path]]:
    """``docker run <image> train`` with the channels and hyperparameters.json."""
    mounts = training_mounts(list(channels), root)
    for channel, source in channels.items():
        shutil.copytree(source, mounts[f"{OPT_ML}/input/data/{channel}"])
    config = mounts[f"{OPT_ML}/input/config"]
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(dict(hyperparameters)))
    return run_job(engine, image, mounts, ["train"]), mounts


def failure(result: subprocess.CompletedProcess[str], mounts: dict[str, Path]) -> str:
    path = mounts[f"{OPT_ML}/output"] / "failure"
    return path.read_text() if path.is_file() else f"(no failure file)\n{result.stderr[-2000:]}"


# --------------------------------------------------------------------- host data


@pytest.fixture(scope="module")
def host_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Splits and a trained model made on the host, as inputs of the train and evaluate jobs."""
    from steps.prepare import prepare
    from steps.train import train

    root = tmp_path_factory.mktemp("host-data")
    cfg = compose(UPSERT)
    splits = prepare(cfg, root / "data")
    train(cfg, splits["train"], splits["validation"], root / "model")
    return {**splits, "model": root / "model"}


def model_archive(model_dir: Path, folder: Path) -> Path:
    """``model.tar.gz`` of a model folder, as a training job's output."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "model.tar.gz", "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return folder


# ------------------------------------------------------------------------- tests


def test_image_carries_no_sagemaker_sdk_and_no_host_tools(
    engine: tool.Engine, image: str, tmp_path: Path
) -> None:
    code = (
        "import importlib.util, socket, sys\n"
        "absent = ['sagemaker', 'optuna', 'sqlalchemy', 'pipelines', 'infra', 'pytest', 'moto']\n"
        "found = [m for m in absent if importlib.util.find_spec(m)]\n"
        "try:\n"
        "    socket.create_connection(('pypi.org', 443), timeout=3).close()\n"
        "    online = True\n"
        "except OSError:\n"
        "    online = False\n"
        "import container.entrypoint, steps.evaluate, steps.prepare, steps.train\n"
        "print({'found': found, 'online': online})\n"
    )
    result = run_job(engine, image, {}, ["-c", code], entrypoint=["python"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "{'found': [], 'online': False}"


def test_prepare_runs_as_the_definitions_processing_job(
    engine: tool.Engine,
    image: str,
    train_definition: tuple[dict[str, Any], Path],
    tmp_path: Path,
) -> None:
    definition, channel = train_definition
    step = steps(definition)["Prepare"]
    params = parameters(definition)
    mounts = processing_mounts(step, tmp_path)
    shutil.copytree(channel, mounts[f"{OPT_ML}/processing/input/config"])
    result, mounts = run_processing(engine, image, step, params, tmp_path)
    assert result.returncode == 0, failure(result, mounts)
    outputs = step["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert {o["OutputName"] for o in outputs} == {"train", "validation", "test"}
    for output in outputs:
        folder = mounts[output["S3Output"]["LocalPath"]]
        assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "data.parquet"]
    assert (
        "n_rows: 6000" in (mounts[outputs[0]["S3Output"]["LocalPath"]] / "config.yaml").read_text()
    )


def test_training_runs_with_the_single_argument_train(
    engine: tool.Engine,
    image: str,
    train_definition: tuple[dict[str, Any], Path],
    host_data: dict[str, Path],
    tmp_path: Path,
) -> None:
    definition, channel = train_definition
    args = steps(definition)["Train"]["Arguments"]
    hyperparameters = without_empty(resolve(args["HyperParameters"], parameters(definition)))
    sources = {**host_data, "config": channel}
    channels = {c["ChannelName"]: sources[c["ChannelName"]] for c in args["InputDataConfig"]}
    result, mounts = run_training(engine, image, channels, hyperparameters, tmp_path)
    assert result.returncode == 0, failure(result, mounts)
    model = mounts[f"{OPT_ML}/model"]
    assert (model / MODEL_FILE).is_file()
    assert "validation:poisson_deviance=" in result.stdout + result.stderr


def test_training_takes_a_tuning_jobs_hyperparameters(
    engine: tool.Engine,
    image: str,
    tune_definition: tuple[dict[str, Any], Path],
    host_data: dict[str, Path],
    tmp_path: Path,
) -> None:
    definition, channel = tune_definition
    args = steps(definition)["Tune"]["Arguments"]
    job = args["TrainingJobDefinition"]
    static = resolve(job["StaticHyperParameters"], parameters(definition))
    ranges = args["HyperParameterTuningJobConfig"]["ParameterRanges"]
    tuned = {r["Name"]: r["MaxValue"] for r in ranges.get("IntegerParameterRanges", [])}
    tuned |= {r["Name"]: r["MinValue"] for r in ranges.get("ContinuousParameterRanges", [])}
    tuned |= {r["Name"]: r["Values"][0] for r in ranges.get("CategoricalParameterRanges", [])}
    assert tuned
    hyperparameters = {**without_empty(static), **tuned, **TUNER_KEYS}
    sources = {**host_data, "config": channel}
    channels = {c["ChannelName"]: sources[c["ChannelName"]] for c in job["InputDataConfig"]}
    result, mounts = run_training(engine, image, channels, hyperparameters, tmp_path)
    assert result.returncode == 0, failure(result, mounts)
    model = mounts[f"{OPT_ML}/model"]
    assert (model / MODEL_FILE).is_file()
    ran_with = OmegaConf.load(model / "config.yaml")
    for key, value in tuned.items():
        assert float(OmegaConf.select(ran_with, key)) == pytest.approx(float(value)), key


def test_evaluate_runs_as_the_definitions_processing_job(
    engine: tool.Engine,
    image: str,
    train_definition: tuple[dict[str, Any], Path],
    host_data: dict[str, Path],
    tmp_path: Path,
) -> None:
    definition, channel = train_definition
    step = steps(definition)["Evaluate"]
    mounts = processing_mounts(step, tmp_path)
    sources = {**host_data, "config": channel}
    for item in step["Arguments"]["ProcessingInputs"]:
        name, target = item["InputName"], mounts[item["S3Input"]["LocalPath"]]
        if name == "model":
            model_archive(host_data["model"], target)
        else:
            shutil.copytree(sources[name], target)
    result, mounts = run_processing(engine, image, step, parameters(definition), tmp_path)
    assert result.returncode == 0, failure(result, mounts)
    (output,) = step["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    folder = mounts[output["S3Output"]["LocalPath"]]
    names = {p.name for p in folder.iterdir()}
    assert {"metrics.json", "calibration.png", "lorenz.png", "config.yaml"} <= names
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test"]["poisson_deviance"] > 0


def test_a_failing_job_writes_its_reason_to_opt_ml_output_failure(
    engine: tool.Engine,
    image: str,
    train_definition: tuple[dict[str, Any], Path],
    tmp_path: Path,
) -> None:
    definition, channel = train_definition
    step = steps(definition)["Prepare"]
    params = parameters(definition, HydraOverrides="model.max_leaf_nodez=3")
    mounts = processing_mounts(step, tmp_path)
    shutil.copytree(channel, mounts[f"{OPT_ML}/processing/input/config"])
    result, mounts = run_processing(engine, image, step, params, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "max_leaf_nodez" in failure(result, mounts)
    for output in step["Arguments"]["ProcessingOutputConfig"]["Outputs"]:
        assert not any(mounts[output["S3Output"]["LocalPath"]].iterdir())


def test_the_image_names_its_source_and_its_base(engine: tool.Engine, image: str) -> None:
    labels = tool.image_labels(engine, image)
    assert labels[tool.REVISION_LABEL] == image.rsplit(":", 1)[1]
    base = labels[tool.BASE_LABEL]
    if tool.is_standin(labels):
        # Built on the stand-in: the label push-image refuses came with the base.
        assert tool.is_standin(tool.image_labels(engine, base))
    else:
        assert base.startswith("python:3.11"), base


def test_the_image_has_a_manifest_sagemaker_accepts(engine: tool.Engine, image: str) -> None:
    """CreateModel refuses OCI manifests and indexes: podman builds Docker v2 schema 2."""
    import subprocess

    from infra.image.build import DOCKER_MANIFEST

    if engine.name != "podman":
        pytest.skip("the manifest type is read from podman's image store")
    done = subprocess.run(
        engine.cmd("image", "inspect", "--format", "{{.ManifestType}}", image),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == DOCKER_MANIFEST


def test_run_local_runs_each_job_after_those_that_make_its_inputs(
    engine: tool.Engine, image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.image.cli import main

    argv = ["run-local", "--image", image, "evaluate", "data.n_rows=6000"]
    code = main([*argv, "model=glm_poisson"])
    out = capsys.readouterr().out
    trees = {
        line.split(":", 1)[0]: Path(line.rsplit(" ", 1)[1])
        for line in out.splitlines()
        if ": the /opt/ml tree is kept at " in line
    }
    try:
        assert code == 0, out[-2000:]
        assert list(trees) == ["prepare", "train", "evaluate"]
        evaluation = trees["evaluate"] / "processing" / "output" / "evaluation"
        metrics = json.loads((evaluation / "metrics.json").read_text())
        assert metrics["test"]["poisson_deviance"] > 0
        assert (trees["train"] / "model" / MODEL_FILE).is_file()
    finally:
        for tree in trees.values():
            shutil.rmtree(tree.parent, ignore_errors=True)
