"""Pipeline definitions built by the SageMaker SDK (3.x), for the executor's tests.

``python tests/executor/sdk_definitions.py`` writes each definition to
``tests/executor/sdk/<name>.json``; the tests read those files, so they need
neither the SDK nor its seconds of import time. ``test_sdk_definitions.py`` checks
that the files are what the installed SDK builds.

The jobs run the tiny stand-in image (``tiny_image.py``): processing steps name it
in their ContainerEntrypoint, relative to the image's working folder; training
jobs run its ENTRYPOINT with the single argument ``train``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).with_name("sdk")
IMAGE = "tiny-image:latest"
BUCKET = "tiny-bucket"
ROLE = "arn:aws:iam::000000000000:role/local"
KMS_KEY = "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-0000-0000-000000000000"
NUMBERS = f"s3://{BUCKET}/input/numbers/"
PROCESSING = "/opt/ml/processing"
# No AWS call: role validation off, every endpoint a closed local port.
OFFLINE = {
    "SAGEMAKER_VALIDATE_ROLE": "false",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_EC2_METADATA_DISABLED": "true",
}
TELEMETRY_OFF = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


def build() -> dict[str, dict[str, Any]]:
    """Every definition by name, as the SDK builds it (offline; the environment is restored)."""
    saved = {name: os.environ.get(name) for name in OFFLINE}
    os.environ.update(OFFLINE)
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _Builder().definitions()
    finally:
        logging.disable(logging.NOTSET)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Builder:
    def __init__(self) -> None:
        import boto3
        from sagemaker.core.workflow.pipeline_context import PipelineSession

        self.session = PipelineSession(
            boto_session=boto3.Session(region_name="us-east-1"),
            default_bucket=BUCKET,
            sagemaker_config=TELEMETRY_OFF,
        )
        self.session._default_bucket = BUCKET

    def definitions(self) -> dict[str, dict[str, Any]]:
        return {
            "pipeline": self.pipeline(),
            "tuning": self.tuning(),
            "gate_not": self.gate_not(),
            "gate_text": self.gate_text(),
            "step_name": self.step_name(),
        }

    # ------------------------------------------------------------------ pieces

    def run_uri(self, *parts: str) -> Any:
        from sagemaker.core.workflow.execution_variables import ExecutionVariables
        from sagemaker.core.workflow.functions import Join

        values = [f"s3://{BUCKET}/runs", ExecutionVariables.PIPELINE_EXECUTION_ID, *parts]
        return Join(on="/", values=values)

    def processor(self, command: str, instance_type: Any = "ml.m5.large", **extra: Any) -> Any:
        from sagemaker.core.processing import Processor

        return Processor(
            role=ROLE,
            image_uri=IMAGE,
            instance_count=1,
            instance_type=instance_type,
            entrypoint=["python", "tiny_image.py", command],
            volume_size_in_gb=1,
            sagemaker_session=self.session,
            **extra,
        )

    def s3_input(self, name: str, uri: Any) -> Any:
        from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

        return ProcessingInput(
            input_name=name,
            s3_input=ProcessingS3Input(
                s3_uri=uri,
                local_path=f"{PROCESSING}/input/{name}",
                s3_data_type="S3Prefix",
                s3_input_mode="File",
            ),
        )

    def s3_output(self, name: str, uri: Any) -> Any:
        from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output

        return ProcessingOutput(
            output_name=name,
            s3_output=ProcessingS3Output(
                s3_uri=uri, local_path=f"{PROCESSING}/output/{name}", s3_upload_mode="EndOfJob"
            ),
        )

    def copy_step(self, data: Any, instance_type: Any = "ml.m5.large", **extra: Any) -> Any:
        """Copy: the numbers from ``data`` to a run's ``copy/data``, cached for 30 days."""
        from sagemaker.mlops.workflow.steps import CacheConfig, ProcessingStep

        args = self.processor("copy", instance_type, volume_kms_key=KMS_KEY).run(
            inputs=[self.s3_input("data", data)],
            outputs=[self.s3_output("data", self.run_uri("copy", "data"))],
            arguments=[f"{PROCESSING}/input/data", f"{PROCESSING}/output/data"],
        )
        return ProcessingStep(
            name="Copy",
            step_args=args,
            cache_config=CacheConfig(enable_caching=True, expire_after="30d"),
            **extra,
        )

    def trainer(self, instance_type: Any = "ml.m5.large", **hyperparameters: Any) -> Any:
        from sagemaker.core.shapes import MetricDefinition
        from sagemaker.train import ModelTrainer
        from sagemaker.train.configs import Compute, OutputDataConfig, StoppingCondition

        return ModelTrainer(
            training_image=IMAGE,
            role=ROLE,
            sagemaker_session=self.session,
            base_job_name="tiny-train",
            compute=Compute(
                instance_type=instance_type,
                instance_count=1,
                volume_size_in_gb=1,
                volume_kms_key_id=KMS_KEY,
            ),
            stopping_condition=StoppingCondition(max_runtime_in_seconds=600),
            output_data_config=OutputDataConfig(s3_output_path=self.run_uri("model")),
            hyperparameters=hyperparameters,
        ).with_metric_definitions([MetricDefinition(name="loss", regex="loss=([-+0-9.eE]+)")])

    def pipeline_of(self, name: str, parameters: list[Any], steps: list[Any]) -> dict[str, Any]:
        from sagemaker.mlops.workflow.pipeline import Pipeline

        pipeline = Pipeline(
            name=name,
            parameters=parameters,
            steps=steps,
            sagemaker_session=self.session,
            pipeline_experiment_config=None,
        )
        return json.loads(pipeline.definition())

    # ------------------------------------------------------------- definitions

    def pipeline(self) -> dict[str, Any]:
        """Copy -> Fit -> Score -> Gate (Not, <=) -> Register -> Report | TooHigh.

        Copy has retry policies of both kinds; Report reads properties of the
        Describe* responses (CreationTime, TrainingTimeInSeconds, ModelPackageVersion...).
        """
        from sagemaker.core.workflow.conditions import (
            ConditionEquals,
            ConditionLessThanOrEqualTo,
            ConditionNot,
        )
        from sagemaker.core.workflow.functions import Join, JsonGet
        from sagemaker.core.workflow.parameters import ParameterFloat, ParameterString
        from sagemaker.core.workflow.properties import PropertyFile
        from sagemaker.mlops.workflow.condition_step import ConditionStep
        from sagemaker.mlops.workflow.fail_step import FailStep
        from sagemaker.mlops.workflow.model_step import ModelStep
        from sagemaker.mlops.workflow.retry import (
            SageMakerJobExceptionTypeEnum,
            SageMakerJobStepRetryPolicy,
            StepExceptionTypeEnum,
            StepRetryPolicy,
        )
        from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep
        from sagemaker.serve.model_builder import ModelBuilder
        from sagemaker.train.configs import InputData

        data = ParameterString("InputDataUri", default_value=NUMBERS)
        processing_type = ParameterString("ProcessingInstanceType", default_value="ml.m5.large")
        training_type = ParameterString("TrainingInstanceType", default_value="ml.m5.large")
        x = ParameterString("X", default_value="2")
        threshold = ParameterFloat("Threshold", default_value=100.0)
        copy = self.copy_step(
            data,
            processing_type,
            retry_policies=[
                StepRetryPolicy(
                    exception_types=[
                        StepExceptionTypeEnum.SERVICE_FAULT,
                        StepExceptionTypeEnum.THROTTLING,
                    ],
                    max_attempts=2,
                ),
                SageMakerJobStepRetryPolicy(
                    exception_types=[
                        SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                        SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                    ],
                    interval_seconds=1,
                    backoff_rate=2.0,
                    max_attempts=3,
                ),
            ],
        )
        copied = copy.properties.ProcessingOutputConfig.Outputs["data"].S3Output.S3Uri
        fit = TrainingStep(
            name="Fit",
            step_args=self.trainer(training_type, x=x).train(
                input_data_config=[InputData(channel_name="numbers", data_source=copied)]
            ),
        )
        model = fit.properties.ModelArtifacts.S3ModelArtifacts
        metrics = PropertyFile(name="Metrics", output_name="evaluation", path="metrics.json")
        score = ProcessingStep(
            name="Score",
            step_args=self.processor("score").run(
                inputs=[self.s3_input("model", model)],
                outputs=[self.s3_output("evaluation", self.run_uri("score", "evaluation"))],
                arguments=[f"{PROCESSING}/input/model", f"{PROCESSING}/output/evaluation"],
            ),
            property_files=[metrics],
        )
        loss = JsonGet(step_name=score.name, property_file=metrics, json_path="test.loss")
        register = ModelStep(
            name="Register",
            step_args=ModelBuilder(
                image_uri=IMAGE,
                s3_model_data_url=model,
                role_arn=ROLE,
                sagemaker_session=self.session,
            ).register(
                model_package_group_name="tiny",
                content_types=["application/json"],
                response_types=["application/json"],
                inference_instances=["ml.m5.large"],
                transform_instances=["ml.m5.large"],
                approval_status="PendingManualApproval",
            ),
            retry_policies=[
                StepRetryPolicy(
                    exception_types=[StepExceptionTypeEnum.SERVICE_FAULT], max_attempts=1
                )
            ],
        )
        registered = register.properties
        report = ProcessingStep(
            name="Report",
            step_args=self.processor(
                "copy",
                env={
                    "TRAINING_CREATED": fit.properties.CreationTime,
                    "TRAINING_SECONDS": Join(on="", values=[fit.properties.TrainingTimeInSeconds]),
                    "BILLABLE_SECONDS": Join(on="", values=[fit.properties.BillableTimeInSeconds]),
                    "MODEL_VERSION": Join(on="", values=[registered.ModelPackageVersion]),
                    "MODEL_STATUS": registered.ModelPackageStatus,
                },
            ).run(
                inputs=[self.s3_input("data", copied)],
                outputs=[self.s3_output("data", self.run_uri("report", "data"))],
                arguments=[f"{PROCESSING}/input/data", f"{PROCESSING}/output/data"],
            ),
            depends_on=[register],
        )
        too_high = FailStep(
            name="TooHigh", error_message=Join(on="", values=["loss ", loss, " > ", threshold])
        )
        gate = ConditionStep(
            name="Gate",
            conditions=[
                ConditionLessThanOrEqualTo(left=loss, right=threshold),
                ConditionNot(
                    ConditionEquals(left=fit.properties.TrainingJobStatus, right="Failed")
                ),
            ],
            if_steps=[register],
            else_steps=[too_high],
        )
        return self.pipeline_of(
            "tiny",
            [data, processing_type, training_type, x, threshold],
            [copy, fit, score, gate, report],
        )

    def tuning(self) -> dict[str, Any]:
        """Copy -> Tune (cached): training jobs write under a path holding the execution id."""
        from sagemaker.core.parameter import ContinuousParameter
        from sagemaker.core.workflow.parameters import ParameterString
        from sagemaker.mlops.workflow.steps import CacheConfig, TuningStep
        from sagemaker.train.configs import InputData
        from sagemaker.train.tuner import HyperparameterTuner

        flavour = ParameterString("Flavour", default_value="plain")
        copy = self.copy_step(NUMBERS)
        copied = copy.properties.ProcessingOutputConfig.Outputs["data"].S3Output.S3Uri
        tuner = HyperparameterTuner(
            model_trainer=self.trainer(flavour=flavour),
            objective_metric_name="loss",
            objective_type="Minimize",
            hyperparameter_ranges={"x": ContinuousParameter(0.0, 6.0, scaling_type="Linear")},
            metric_definitions=[{"Name": "loss", "Regex": "loss=([-+0-9.eE]+)"}],
            strategy="Random",
            max_jobs=2,
            max_parallel_jobs=2,
            random_seed=7,
            base_tuning_job_name="tiny-tune",
        )
        tune = TuningStep(
            name="Tune",
            step_args=tuner.tune(inputs=[InputData(channel_name="numbers", data_source=copied)]),
            cache_config=CacheConfig(enable_caching=True, expire_after="30dT5h"),
        )
        return self.pipeline_of("tiny-tuning", [flavour], [copy, tune])

    def gate_not(self) -> dict[str, Any]:
        """A gate that negates an Equals: Not(Flavour == 'salty')."""
        from sagemaker.core.workflow.conditions import ConditionEquals, ConditionNot
        from sagemaker.core.workflow.parameters import ParameterString
        from sagemaker.mlops.workflow.condition_step import ConditionStep
        from sagemaker.mlops.workflow.fail_step import FailStep

        flavour = ParameterString("Flavour", default_value="plain")
        gate = ConditionStep(
            name="Gate",
            conditions=[ConditionNot(ConditionEquals(left=flavour, right="salty"))],
            if_steps=[],
            else_steps=[FailStep(name="Salty", error_message="salty")],
        )
        return self.pipeline_of("tiny-not", [flavour], [gate])

    def gate_text(self) -> dict[str, Any]:
        """A gate comparing a number with a string parameter (``0.54 <= Label``)."""
        from sagemaker.core.workflow.conditions import ConditionLessThanOrEqualTo
        from sagemaker.core.workflow.parameters import ParameterString
        from sagemaker.mlops.workflow.condition_step import ConditionStep

        label = ParameterString("Label", default_value="abc")
        gate = ConditionStep(
            name="Gate",
            conditions=[ConditionLessThanOrEqualTo(left=0.54, right=label)],
            if_steps=[],
            else_steps=[],
        )
        return self.pipeline_of("tiny-text", [label], [gate])

    def step_name(self) -> dict[str, Any]:
        """A step whose name the SDK takes and the service does not (a space, a '!')."""
        from sagemaker.mlops.workflow.fail_step import FailStep

        return self.pipeline_of("tiny-name", [], [FailStep(name="Too high!", error_message="x")])


def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    for name, definition in build().items():
        (FIXTURES / f"{name}.json").write_text(json.dumps(definition, indent=1) + "\n")
        print(f"wrote {FIXTURES / name}.json", file=sys.stderr)


if __name__ == "__main__":
    main()
