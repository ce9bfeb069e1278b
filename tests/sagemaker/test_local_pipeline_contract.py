"""The project's side of ``make local-pipeline``: its flags, its image as a local command, and
the /opt/ml layout the executor writes as the job side reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor import jobs
from pipelines.sagemaker import local_pipeline


def test_both_sides_agree_on_the_opt_ml_layout(tmp_path: Path) -> None:
    from conf.contract import ENTRYPOINT, MODEL_ARCHIVE, OptMl

    layout = OptMl(tmp_path)
    assert layout.hyperparameters == tmp_path / jobs.HYPERPARAMETERS
    assert layout.channel("train") == tmp_path / jobs.CHANNELS / "train"
    assert layout.model == tmp_path / jobs.MODEL
    assert layout.failure == tmp_path / jobs.FAILURE
    assert layout.message == tmp_path / jobs.MESSAGE
    assert MODEL_ARCHIVE == jobs.MODEL_ARCHIVE
    assert layout.processing_input("config") == tmp_path / "processing/input/config"
    # The entrypoint reads the root from OPT_ML_ROOT, which the local image sets.
    image = local_pipeline.project_images("img:1").get("img:1")
    assert image.entrypoint == tuple(ENTRYPOINT)


def test_the_job_side_reads_what_the_executor_writes(tmp_path: Path) -> None:
    from container import hyperparameters

    path = tmp_path / jobs.HYPERPARAMETERS
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"overrides": "model=glm_poisson", "_tuning_objective_metric": "m"}))
    text, keyed = hyperparameters.split(hyperparameters.read(path))
    assert text == "model=glm_poisson" and keyed == {}


def test_the_project_image_runs_its_entrypoint_here_with_the_project_importable() -> None:
    images = local_pipeline.project_images("claim-frequency:local")
    command, env, workdir = images.command("claim-frequency:local", None, ["train"])
    assert command[1:] == ["-m", "container.entrypoint", "train"]
    assert env["PYTHONPATH"].split(":")[0] == str(local_pipeline.ROOT)
    assert workdir == local_pipeline.ROOT
    assert local_pipeline.image_module() == "container.entrypoint"


def test_flags_and_overrides_come_in_any_order(tmp_path: Path) -> None:
    args = local_pipeline.parse_args(
        [
            "pipeline=tune",
            "--param",
            "QualityThreshold=0.5",
            "--cold",
            "model=glm_poisson",
            "--container",
            "podman",
            "--container-flag=--runtime",
            "--container-flag",
            "runc",
            "--s3",
            "aws",
            "--outputs",
            str(tmp_path),
            "--mounts",
            "plain",
            "--allow-any-input",
            "data.n_rows=10",
        ]
    )
    assert args.overrides == ["pipeline=tune", "model=glm_poisson", "data.n_rows=10"]
    assert args.param == ["QualityThreshold=0.5"] and args.cold and args.allow_any_input
    assert (args.container, args.container_flag) == ("podman", ["--runtime", "runc"])
    assert (args.s3, args.outputs, args.mounts) == ("aws", tmp_path, "plain")
    with pytest.raises(SystemExit) as exit_info:
        local_pipeline.parse_args(["--nope", "pipeline=tune"])
    assert exit_info.value.code == 2


def test_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    assert local_pipeline.main(["--cold", "--param", "NoEquals"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --param 'NoEquals'") and len(err.strip().splitlines()) == 1


def test_the_executor_evaluates_the_conditions_the_sdk_writes() -> None:
    from sagemaker.core.workflow.conditions import (
        ConditionEquals,
        ConditionGreaterThan,
        ConditionNot,
        ConditionOr,
    )

    from executor.expressions import Context, condition

    ctx = Context(parameters={}, execution={})
    no = ConditionNot(ConditionEquals(left=1, right=1))
    yes = ConditionOr([no, ConditionGreaterThan(left=2, right=1)])
    assert no.to_request()["Type"] == "Not"
    assert condition(no.to_request(), ctx) is False
    assert condition(yes.to_request(), ctx) is True
