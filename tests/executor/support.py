"""Hand-written pipeline definitions for the executor's tests, run by a tiny stand-in image."""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

import executor
from executor.engine import Execution, Registry
from executor.images import LocalImage, LocalImages
from executor.jobs import Runner
from executor.storage import FolderStore

TINY = Path(__file__).with_name("tiny_image.py")
SDK_DEFINITIONS = Path(__file__).with_name("sdk")
# Where ``executor`` is imported from: subprocesses import the same one.
EXECUTOR_PATH = str(Path(executor.__file__).parent.parent)
IMAGE = "tiny-image:latest"
BUCKET = "tiny-bucket"
ROLE = "arn:aws:iam::000000000000:role/local"
EXEC_ID = {"Get": "Execution.PipelineExecutionId"}


def python_path(*folders: Path | str) -> str:
    """``PYTHONPATH`` for a subprocess: ``folders``, then the folder holding ``executor``."""
    return os.pathsep.join([*map(str, folders), EXECUTOR_PATH])


def join(*values: Any, on: str = "/") -> dict[str, Any]:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def get(path: str) -> dict[str, str]:
    return {"Get": path}


def run_uri(*parts: str) -> dict[str, Any]:
    return join(f"s3://{BUCKET}/runs", EXEC_ID, *parts)


def processing(
    name: str, command: list[Any], inputs: dict[str, Any], outputs: list[str], **extra: Any
) -> dict[str, Any]:
    return {
        "Name": name,
        "Type": "Processing",
        "Arguments": {
            "AppSpecification": {
                "ImageUri": IMAGE,
                "ContainerEntrypoint": ["python", str(TINY)],
                "ContainerArguments": command,
            },
            "ProcessingInputs": [
                {
                    "InputName": key,
                    "S3Input": {
                        "S3Uri": uri,
                        "LocalPath": f"/opt/ml/processing/input/{key}",
                        "S3DataType": "S3Prefix",
                        "S3InputMode": "File",
                    },
                }
                for key, uri in inputs.items()
            ],
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": key,
                        "S3Output": {
                            "S3Uri": run_uri(name.lower(), key),
                            "LocalPath": f"/opt/ml/processing/output/{key}",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                    for key in outputs
                ]
            },
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "VolumeSizeInGB": 1,
                }
            },
            "RoleArn": ROLE,
        },
        **extra,
    }


def training_definition() -> dict[str, Any]:
    return {
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "loss", "Regex": "loss=([-+0-9.eE]+)"}],
        },
        "InputDataConfig": [
            {
                "ChannelName": "numbers",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": get(
                            "Steps.Copy.ProcessingOutputConfig.Outputs['data'].S3Output.S3Uri"
                        ),
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": run_uri("model")},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1},
        "RoleArn": ROLE,
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def training_request(name: str, **hyperparameters: str) -> dict[str, Any]:
    """A CreateTrainingJob request as boto3 sends it: the tiny image trains on the numbers."""
    request = training_definition()
    channel = request["InputDataConfig"][0]["DataSource"]["S3DataSource"]
    channel["S3Uri"] = f"s3://{BUCKET}/input/numbers/"
    request["OutputDataConfig"]["S3OutputPath"] = f"s3://{BUCKET}/jobs/model"
    return {"TrainingJobName": name, "HyperParameters": hyperparameters, **request}


def definition(tune: bool = False) -> dict[str, Any]:
    """Copy -> Train (or Tune) -> Score -> Gate -> Register | Fail."""
    copy_step = processing(
        "Copy",
        ["copy", "/opt/ml/processing/input/data", "/opt/ml/processing/output/data"],
        {"data": f"s3://{BUCKET}/input/numbers/"},
        ["data"],
        CacheConfig={"Enabled": True, "ExpireAfter": "P1D"},
    )
    if tune:
        train_def = training_definition()
        train_def["StaticHyperParameters"] = {"flavour": get("Parameters.Flavour")}
        fit = {
            "Name": "Fit",
            "Type": "Tuning",
            "Arguments": {
                "HyperParameterTuningJobConfig": {
                    "Strategy": "Random",
                    "RandomSeed": 7,
                    "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "loss"},
                    "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2},
                    "ParameterRanges": {
                        "ContinuousParameterRanges": [
                            {"Name": "x", "MinValue": "0", "MaxValue": "6", "ScalingType": "Linear"}
                        ]
                    },
                    "TrainingJobEarlyStoppingType": "Off",
                },
                "TrainingJobDefinition": train_def,
            },
        }
        model = join(
            "s3:/",
            BUCKET,
            join("runs", EXEC_ID, "model"),
            get("Steps.Fit.TrainingJobSummaries[0].TrainingJobName"),
            "output/model.tar.gz",
        )
    else:
        request = training_definition()
        request["HyperParameters"] = {
            "x": join(get("Parameters.X"), on=""),
            "flavour": get("Parameters.Flavour"),
        }
        fit = {"Name": "Fit", "Type": "Training", "Arguments": request}
        model = get("Steps.Fit.ModelArtifacts.S3ModelArtifacts")
    score = processing(
        "Score",
        ["score", "/opt/ml/processing/input/model", "/opt/ml/processing/output/evaluation"],
        {"model": model},
        ["evaluation"],
        PropertyFiles=[
            {"PropertyFileName": "Metrics", "OutputName": "evaluation", "FilePath": "metrics.json"}
        ],
    )
    loss = {
        "Std:JsonGet": {
            "PropertyFile": get("Steps.Score.PropertyFiles.Metrics"),
            "Path": "test.loss",
        }
    }
    register = {
        "Name": "Register",
        "Type": "RegisterModel",
        "Arguments": {
            "ModelPackageGroupName": "tiny",
            "ModelApprovalStatus": "PendingManualApproval",
            "InferenceSpecification": {
                "Containers": [{"Image": IMAGE, "ModelDataUrl": model}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        },
    }
    fail = {
        "Name": "TooHigh",
        "Type": "Fail",
        "Arguments": {
            "ErrorMessage": join("loss ", loss, " > ", get("Parameters.Threshold"), on="")
        },
    }
    gate = {
        "Name": "Gate",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {
                    "Type": "LessThanOrEqualTo",
                    "LeftValue": loss,
                    "RightValue": get("Parameters.Threshold"),
                }
            ],
            "IfSteps": [register],
            "ElseSteps": [fail],
        },
    }
    return {
        "Version": "2020-12-01",
        "Parameters": [
            {"Name": "X", "Type": "Float", "DefaultValue": 2.0},
            {"Name": "Threshold", "Type": "Float", "DefaultValue": 100.0},
            {
                "Name": "Flavour",
                "Type": "String",
                "DefaultValue": "plain",
                "EnumValues": ["plain", "salty"],
            },
        ],
        "Steps": [copy_step, fit, score, gate],
    }


def tiny_images() -> LocalImages:
    """The stand-in image: its ENTRYPOINT is the tiny script, its working folder this one (an
    SDK-built definition names ``tiny_image.py`` in its ContainerEntrypoint)."""
    image = LocalImage(("python", str(TINY)), workdir=TINY.parent)
    return LocalImages({IMAGE: image}, interpreter=sys.executable)


def sdk_definition(name: str) -> dict[str, Any]:
    """A definition the SageMaker SDK built (``sdk_definitions.py`` wrote it to ``sdk/``)."""
    return json.loads((SDK_DEFINITIONS / f"{name}.json").read_text())


def execution(
    tmp: Path,
    pipeline: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
    isolation: str = "plain",
    execution_id: str = "exec00000001",
) -> Execution:
    """An execution of ``pipeline`` over a folder store in ``tmp`` with numbers 1 2 3 as input."""
    store = FolderStore(tmp / "s3")
    numbers = store.local_path(f"s3://{BUCKET}/input/numbers/numbers.txt")
    if not numbers.exists():
        numbers.parent.mkdir(parents=True)
        numbers.write_text("1 2 3\n")
    folder = tmp / execution_id
    runner = Runner(
        store=store, images=tiny_images(), jobs_dir=folder / "jobs", isolation=isolation
    )
    return Execution(
        copy.deepcopy(pipeline or definition()),
        params or {},
        runner,
        folder,
        pipeline_name="tiny",
        execution_id=execution_id,
        store=store,
        registry=Registry(folder / "registry"),
        cache_root=tmp,
    )
