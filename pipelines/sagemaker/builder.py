"""The SageMaker Pipeline: Prepare -> Train or Tune -> Evaluate -> QualityGate -> Register.

``get_pipeline(cfg, session, config_uri)`` assembles the pipeline from one composed
config. Every job runs the project's image with the config channel (the uploaded
config tree, ``config_uri``) as input ``config``, and applies the ``HydraOverrides``
parameter on top of it, so a Studio user can switch a group at start time.

Import this module only after a region is set (the SDK creates clients at import);
``pipelines.sagemaker.sdk.sagemaker_env`` does that and switches the SDK's telemetry off.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig
from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
from sagemaker.core.parameter import (
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    ParameterRange,
)
from sagemaker.core.processing import Processor
from sagemaker.core.shapes import (
    MetricDefinition,
    ProcessingInput,
    ProcessingOutput,
    ProcessingS3Input,
    ProcessingS3Output,
    Tag,
)
from sagemaker.core.workflow.conditions import ConditionLessThanOrEqualTo
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join, JsonGet
from sagemaker.core.workflow.parameters import ParameterFloat, ParameterString
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.core.workflow.properties import PropertyFile
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.model_step import ModelStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.retry import (
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)
from sagemaker.mlops.workflow.steps import CacheConfig, ProcessingStep, TrainingStep, TuningStep
from sagemaker.serve.model_builder import ModelBuilder
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, InputData, OutputDataConfig, StoppingCondition
from sagemaker.train.tuner import HyperparameterTuner

from conf.contract import (
    CONFIG_CHANNEL,
    ENTRYPOINT,
    EVALUATE,
    EVALUATION_OUTPUT,
    INPUT_DATA_PARAMETER,
    JOB,
    JOB_ARGUMENTS,
    JOB_HYPERPARAMETERS,
    METRIC_NAMES,
    METRIC_REGEX,
    METRICS_FILE,
    MODEL_INPUT,
    MODEL_QUALITY_FILE,
    OVERRIDES_PARAMETER,
    PREPARE,
    REQUEST_CONTENT_TYPES,
    RESPONSE_CONTENT_TYPES,
    SPLITS,
    UNSET,
)

# The splits a training job reads (channels) and an evaluation job scores (inputs).
TRAINING_SPLITS = ("train", "validation")
EVALUATION_SPLITS = ("test", "validation")


def parameters(cfg: DictConfig) -> dict[str, ParameterString | ParameterFloat]:
    """The pipeline parameters a user can set at start, with defaults from ``cfg``.

    The service refuses empty parameter values, so "no overrides" and "the
    configured data source" are the value ``none`` (``conf.contract.UNSET``).
    """
    sm = cfg.sagemaker
    return {
        INPUT_DATA_PARAMETER: ParameterString(INPUT_DATA_PARAMETER, default_value=UNSET),
        "ProcessingInstanceType": ParameterString(
            "ProcessingInstanceType", default_value=sm.processing_instance_type
        ),
        "TrainingInstanceType": ParameterString(
            "TrainingInstanceType", default_value=sm.training_instance_type
        ),
        "ModelApprovalStatus": ParameterString(
            "ModelApprovalStatus",
            default_value=cfg.pipeline.approval_status,
            enum_values=["Approved", "Rejected", "PendingManualApproval"],
        ),
        "QualityThreshold": ParameterFloat(
            "QualityThreshold", default_value=float(cfg.pipeline.max_test_deviance)
        ),
        OVERRIDES_PARAMETER: ParameterString(
            OVERRIDES_PARAMETER, default_value=cfg.pipeline.overrides or UNSET
        ),
    }


def job_arguments(params: dict[str, Any]) -> list[Join]:
    """Processing job arguments: one ``--flag=<value>`` item per parameter.

    The service refuses an empty ContainerArguments item; joined to its flag, a
    parameter's value can never make one.
    """
    return [Join(on="", values=[f"{flag}=", params[name]]) for flag, name in JOB_ARGUMENTS.items()]


def metric_definitions() -> list[dict[str, str]]:
    """Metric definitions whose regexes are the ones ``steps.train`` prints."""
    out = []
    for name in METRIC_NAMES:
        split, metric = name.split(":", 1)
        out.append({"Name": name, "Regex": METRIC_REGEX.format(split=split, name=metric)})
    return out


def hyperparameter_ranges(cfg: DictConfig) -> dict[str, ParameterRange]:
    """The search space of ``cfg.tuning.parameters`` as SDK ranges, keyed ``model.<key>``.

    The ranges were checked against the selected model when the config composed.
    """
    ranges: dict[str, ParameterRange] = {}
    for key, spec in cfg.tuning.parameters.items():
        name = f"model.{key}"
        if spec.type == "integer":
            ranges[name] = IntegerParameter(int(spec.min), int(spec.max), scaling_type=spec.scaling)
        elif spec.type == "continuous":
            ranges[name] = ContinuousParameter(
                float(spec.min), float(spec.max), scaling_type=spec.scaling
            )
        else:
            ranges[name] = CategoricalParameter([str(v) for v in spec["values"]])
    return ranges


def config_prefix(cfg: DictConfig) -> str:
    """``s3://<config bucket>/<prefix>/pipelines/<pipeline>/config``: the pipeline's channels.

    A deployed pipeline (and its schedule) reads its channel for as long as it
    exists, so its channels live outside ``<prefix>/config/``, the only prefix
    the config bucket's lifecycle rule expires (``infra/template.yaml``).
    """
    bucket = cfg.sagemaker.config_bucket or cfg.sagemaker.bucket
    return f"s3://{bucket}/{cfg.sagemaker.prefix}/pipelines/{cfg.pipeline.name}/config"


def tags(cfg: DictConfig) -> list[dict[str, str]]:
    """``sagemaker.tags`` as AWS tags."""
    return [{"Key": str(k), "Value": str(v)} for k, v in cfg.sagemaker.tags.items()]


def _retry_policies(cfg: DictConfig, job: bool = True) -> list[Any]:
    """Retry throttling and service faults; for jobs also capacity and resource limits."""
    attempts = int(cfg.pipeline.retry_attempts)
    if attempts <= 0:
        return []
    policies: list[Any] = [
        StepRetryPolicy(
            exception_types=[StepExceptionTypeEnum.THROTTLING, StepExceptionTypeEnum.SERVICE_FAULT],
            interval_seconds=10,
            backoff_rate=2.0,
            max_attempts=attempts,
        )
    ]
    if job:
        policies.append(
            SageMakerJobStepRetryPolicy(
                exception_types=[
                    SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                    SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
                    SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                ],
                interval_seconds=60,
                backoff_rate=2.0,
                max_attempts=attempts,
            )
        )
    return policies


def _s3_input(name: str, uri: Any) -> ProcessingInput:
    """Processing input ``name`` at the job's ``/opt/ml/processing/input/<name>``."""
    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=uri,
            local_path=str(JOB.processing_input(name)),
            s3_data_type="S3Prefix",
            s3_input_mode="File",
            s3_data_distribution_type="FullyReplicated",
        ),
    )


def _s3_output(name: str, uri: Any) -> ProcessingOutput:
    """Processing output ``name`` from the job's ``/opt/ml/processing/output/<name>``."""
    local = str(JOB.processing_output(name))
    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(s3_uri=uri, local_path=local, s3_upload_mode="EndOfJob"),
    )


def get_pipeline(cfg: DictConfig, session: PipelineSession, config_uri: str) -> Pipeline:
    """Assemble the SageMaker Pipeline for ``cfg``; ``config_uri`` is the config channel."""
    sm = cfg.sagemaker
    params = parameters(cfg)
    run_root = Join(
        on="/",
        values=[f"s3://{sm.bucket}", sm.prefix, "runs", ExecutionVariables.PIPELINE_EXECUTION_ID],
    )

    def run_uri(*parts: str) -> Join:
        return Join(on="/", values=[run_root, *parts])

    def run_key(*parts: str) -> Join:
        return Join(
            on="/", values=[sm.prefix, "runs", ExecutionVariables.PIPELINE_EXECUTION_ID, *parts]
        )

    def processor(command: str) -> Processor:
        return Processor(
            role=sm.role_arn,
            image_uri=sm.image_uri,
            instance_count=int(sm.instance_count),
            instance_type=params["ProcessingInstanceType"],
            entrypoint=[*ENTRYPOINT, command],
            volume_size_in_gb=int(sm.volume_size_gb),
            volume_kms_key=sm.kms_key_id,
            output_kms_key=sm.kms_key_id,
            max_runtime_in_seconds=int(sm.max_runtime_seconds),
            base_job_name=f"{cfg.pipeline.name}-{command}",
            sagemaker_session=session,
            tags=tags(cfg),
        )

    config_input = _s3_input(CONFIG_CHANNEL, config_uri)

    # ------------------------------------------------------------------ Prepare
    prepare_args = processor(PREPARE).run(
        inputs=[config_input],
        outputs=[_s3_output(split, run_uri("data", split)) for split in SPLITS],
        arguments=job_arguments(params),
    )
    prepare = ProcessingStep(
        name="Prepare",
        step_args=prepare_args,
        cache_config=CacheConfig(
            enable_caching=bool(cfg.pipeline.cache_prepare),
            expire_after=cfg.pipeline.cache_expire_after,
        ),
        retry_policies=_retry_policies(cfg),
    )
    split_uri = {
        split: prepare.properties.ProcessingOutputConfig.Outputs[split].S3Output.S3Uri
        for split in SPLITS
    }

    # ------------------------------------------------------------ Train or Tune
    trainer = ModelTrainer(
        training_image=sm.image_uri,
        role=sm.role_arn,
        sagemaker_session=session,
        base_job_name=f"{cfg.pipeline.name}-train",
        compute=Compute(
            instance_type=params["TrainingInstanceType"],
            instance_count=int(sm.instance_count),
            volume_size_in_gb=int(sm.volume_size_gb),
            volume_kms_key_id=sm.kms_key_id,
        ),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=int(sm.max_runtime_seconds)),
        output_data_config=OutputDataConfig(
            s3_output_path=run_uri("model"), kms_key_id=sm.kms_key_id
        ),
        hyperparameters={key: params[name] for key, name in JOB_HYPERPARAMETERS.items()},
        tags=[Tag(key=t["Key"], value=t["Value"]) for t in tags(cfg)],
    ).with_metric_definitions(
        [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in metric_definitions()]
    )
    channels = [
        *(InputData(channel_name=s, data_source=split_uri[s]) for s in TRAINING_SPLITS),
        InputData(channel_name=CONFIG_CHANNEL, data_source=config_uri),
    ]
    if cfg.pipeline.mode == "tune":
        tuning = cfg.tuning
        tuner = HyperparameterTuner(
            model_trainer=trainer,
            objective_metric_name=tuning.objective_metric,
            objective_type=tuning.objective_type,
            hyperparameter_ranges=hyperparameter_ranges(cfg),
            metric_definitions=metric_definitions(),
            strategy=tuning.strategy,
            max_jobs=int(tuning.max_jobs),
            max_parallel_jobs=int(tuning.max_parallel_jobs),
            random_seed=None if tuning.seed is None else int(tuning.seed),
            base_tuning_job_name=f"{cfg.pipeline.name}-tune"[:32],
            tags=tags(cfg),
        )
        fit = _TuningStep(
            name="Tune",
            step_args=tuner.tune(inputs=channels),
            retry_policies=_retry_policies(cfg),
            volume_kms_key_id=sm.kms_key_id,
            cfg=cfg,
        )
        # The best training job's model; training jobs write under the trainer's output path.
        model_uri: Any = fit.get_top_model_s3_uri(
            top_k=0, s3_bucket=sm.bucket, prefix=run_key("model")
        )
    else:
        fit = TrainingStep(
            name="Train",
            step_args=trainer.train(input_data_config=channels),
            retry_policies=_retry_policies(cfg),
        )
        model_uri = fit.properties.ModelArtifacts.S3ModelArtifacts

    # ----------------------------------------------------------------- Evaluate
    metrics_file = PropertyFile(
        name="EvaluationMetrics", output_name=EVALUATION_OUTPUT, path=METRICS_FILE
    )
    evaluation_uri = run_uri(EVALUATION_OUTPUT)
    evaluate_args = processor(EVALUATE).run(
        inputs=[
            config_input,
            _s3_input(MODEL_INPUT, model_uri),
            *(_s3_input(s, split_uri[s]) for s in EVALUATION_SPLITS),
        ],
        outputs=[_s3_output(EVALUATION_OUTPUT, evaluation_uri)],
        arguments=job_arguments(params),
    )
    evaluate = ProcessingStep(
        name="Evaluate",
        step_args=evaluate_args,
        property_files=[metrics_file],
        retry_policies=_retry_policies(cfg),
    )

    # ------------------------------------------------------ QualityGate, Register
    test_deviance = JsonGet(
        step_name=evaluate.name, property_file=metrics_file, json_path="test.poisson_deviance"
    )
    baseline_deviance = JsonGet(
        step_name=evaluate.name,
        property_file=metrics_file,
        json_path="test.baseline_poisson_deviance",
    )
    evaluation_s3 = evaluate.properties.ProcessingOutputConfig.Outputs[
        EVALUATION_OUTPUT
    ].S3Output.S3Uri
    model_metrics = ModelMetrics(
        model_statistics=MetricsSource(
            s3_uri=Join(on="/", values=[evaluation_s3, MODEL_QUALITY_FILE]),
            content_type="application/json",
        )
    )
    builder = ModelBuilder(
        image_uri=sm.image_uri,
        s3_model_data_url=model_uri,
        role_arn=sm.role_arn,
        sagemaker_session=session,
    )
    register_args = builder.register(
        model_package_group_name=sm.model_package_group,
        # Exactly what the image's `serve` command accepts and answers (container/serve.py).
        content_types=list(REQUEST_CONTENT_TYPES),
        response_types=list(RESPONSE_CONTENT_TYPES),
        inference_instances=list(cfg.deploy.inference_instance_types),
        transform_instances=list(cfg.deploy.transform_instance_types),
        model_metrics=model_metrics,
        approval_status=params["ModelApprovalStatus"],
    )
    register = ModelStep(
        name="Register", step_args=register_args, retry_policies=_retry_policies(cfg, job=False)
    )
    fail = FailStep(
        name="QualityGateFailed",
        error_message=Join(
            on="",
            values=[
                "Test Poisson deviance ",
                test_deviance,
                " must be <= the threshold ",
                params["QualityThreshold"],
                " and <= the constant baseline's ",
                baseline_deviance,
                "; the model was not registered.",
            ],
        ),
    )
    gate = ConditionStep(
        name="QualityGate",
        conditions=[
            ConditionLessThanOrEqualTo(left=test_deviance, right=params["QualityThreshold"]),
            ConditionLessThanOrEqualTo(left=test_deviance, right=baseline_deviance),
        ],
        if_steps=[register],
        else_steps=[fail],
    )

    return Pipeline(
        name=cfg.pipeline.name,
        parameters=list(params.values()),
        steps=[prepare, fit, evaluate, gate],
        sagemaker_session=session,
        # Off on purpose: the execution role has no SageMaker Experiments permissions,
        # and the project records runs in the execution and the model registry.
        pipeline_experiment_config=None,
    )


def definition(cfg: DictConfig, session: PipelineSession, config_uri: str) -> str:
    """The definition JSON that upsert sends: ``get_pipeline``'s, with what the service refuses
    taken out.

    The SDK's ``ModelMetrics`` writes every section, empty ones included (``Bias: {}``,
    ``Explainability: {}``); the Register request carries only the sections with content.
    """
    data = json.loads(get_pipeline(cfg, session, config_uri).definition())
    for step in _nested_steps(data["Steps"]):
        metrics = step["Arguments"].get("ModelMetrics") if step["Type"] == "RegisterModel" else None
        if isinstance(metrics, dict):
            for section in [name for name, value in metrics.items() if not value]:
                del metrics[section]
    return json.dumps(data)


def _nested_steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every step, those in a condition's branches included."""
    for step in steps:
        yield step
        arguments = step.get("Arguments") or {}
        if step.get("Type") == "Condition":
            yield from _nested_steps(arguments.get("IfSteps", []) + arguments.get("ElseSteps", []))


class _TuningStep(TuningStep):
    """A TuningStep whose request keeps what the SDK's tuner drops or does not know.

    * the trainer's ``volume_kms_key_id`` (ResourceConfig.VolumeKmsKeyId), so
      tuning jobs encrypt their volumes like the Train step's;
    * HyperParameterTuningJobConfig and WarmStartConfig from the one home of the
      tuning settings (``cloud_tuning``, which ``make cloud-tune`` uses too): a
      seed of 0 (the SDK's "no seed"), early stopping, the completion criterion.
    """

    def __init__(
        self,
        *args: Any,
        volume_kms_key_id: str | None = None,
        cfg: DictConfig,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._volume_kms_key_id = volume_kms_key_id
        self._cfg = cfg

    @property
    def arguments(self) -> dict[str, Any]:
        from pipelines.sagemaker.cloud_tuning import tuning_job_config, warm_start_config

        request = super().arguments
        if self._volume_kms_key_id:
            resources = request["TrainingJobDefinition"]["ResourceConfig"]
            resources["VolumeKmsKeyId"] = self._volume_kms_key_id
        request["HyperParameterTuningJobConfig"] = tuning_job_config(self._cfg)
        warm = warm_start_config(self._cfg)
        if warm:
            request["WarmStartConfig"] = warm
        return request
