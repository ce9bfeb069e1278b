"""What the service would refuse or mishandle on a first real execution, checked offline.

Each test builds the real train or tune definition (as upsert sends it) and its
config channel, then checks it with the rules the service applies
(``executor.service_rules``) and the start-time checks (``pipelines.sagemaker.preflight``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conf import compose
from conf.contract import UNSET
from conf.errors import ConfigError
from executor import service_rules as rules
from pipelines.sagemaker import cli, preflight, quotas
from tests.cloud.support import quota_client

ROLE = "arn:aws:iam::123456789012:role/claim-frequency-sagemaker"
BUCKET = "claim-frequency-data"
BASE = [
    f"sagemaker.role_arn={ROLE}",
    f"sagemaker.bucket={BUCKET}",
    "sagemaker.image_uri=123456789012.dkr.ecr.us-east-1.amazonaws.com/claim-frequency:1",
]
REGION = "us-east-1"
READABLE = f"s3://{BUCKET}/claim-frequency/"
TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "template.yaml"


class Built:
    """A built definition and the local copy of its config channel."""

    def __init__(self, overrides: list[str], folder: Path) -> None:
        cfg = compose(overrides)
        text, self.channel_uri = cli.build_definition(cfg, overrides, folder, REGION)
        self.definition: dict[str, Any] = json.loads(text)
        self.channel = folder

    def check(self, **params: str) -> dict[str, str]:
        return preflight.check_start(self.definition, params, self.channel)


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return Built(BASE, tmp_path_factory.mktemp("train-channel"))


@pytest.fixture(scope="module")
def tune(tmp_path_factory: pytest.TempPathFactory) -> Built:
    kms = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    return Built(
        [*BASE, "pipeline=tune", f"sagemaker.kms_key_id={kms}"],
        tmp_path_factory.mktemp("tune-channel"),
    )


def resolved_jobs(built: Built, params: dict[str, str]) -> list[tuple[str, str, Any]]:
    """(step name, type, resolved request) of every job step, as the service would see it."""
    declared = {p["Name"]: p.get("DefaultValue") for p in built.definition["Parameters"]}
    values = {**declared, **params}
    return [
        (step["Name"], step["Type"], rules.resolve(step["Arguments"], values))
        for step in rules.job_steps(built.definition)
        if step["Type"] in ("Processing", "Training", "Tuning")
    ]


USER_VALUES = [
    {},
    {"HydraOverrides": "model.max_iter=50 data.n_rows=5000"},
    {"HydraOverrides": "", "InputDataUri": ""},
    {"InputDataUri": READABLE + "input/claims.parquet"},
]


# ------------------------------------------------------ item 1 and 5: every value sent


@pytest.mark.parametrize("mode", ["train", "tune"])
@pytest.mark.parametrize("given", USER_VALUES, ids=["defaults", "overrides", "cleared", "data"])
def test_every_job_value_resolves_non_empty_and_within_limits(
    mode: str, given: dict[str, str], train: Built, tune: Built
) -> None:
    built = train if mode == "train" else tune
    sent = built.check(**given)  # the values a start would send
    assert all(value != "" for value in sent.values())
    jobs = resolved_jobs(built, sent)
    assert {kind for _, kind, _ in jobs} >= {"Processing"}
    for name, kind, request in jobs:
        assert rules.request_problems(kind, request) == [], name
        if kind == "Processing":
            app = request["AppSpecification"]
            items = app["ContainerEntrypoint"] + app["ContainerArguments"]
            assert all(str(item).strip() for item in items), (name, items)
        hyper = request.get("HyperParameters") or request.get("TrainingJobDefinition", {}).get(
            "StaticHyperParameters", {}
        )
        assert all(len(str(v)) <= rules.HYPERPARAMETER_MAX for v in hyper.values())


def test_default_parameters_are_never_empty(train: Built) -> None:
    defaults = {p["Name"]: p.get("DefaultValue") for p in train.definition["Parameters"]}
    assert defaults["HydraOverrides"] == UNSET and defaults["InputDataUri"] == UNSET
    assert all(str(v) != "" for v in defaults.values())
    # The schedule sends only its own parameters: the others take these defaults.
    cfg = compose(BASE)
    assert train.check(**{str(k): str(v) for k, v in cfg.schedule.parameters.items()})


def test_start_is_refused_when_a_job_would_get_an_empty_argument(train: Built) -> None:
    """A definition whose Prepare had the old two-item form with an empty literal."""
    definition = copy.deepcopy(train.definition)
    prepare = next(s for s in rules.job_steps(definition) if s["Name"] == "Prepare")
    prepare["Arguments"]["AppSpecification"]["ContainerArguments"] = [
        "--overrides",
        {"Get": "Parameters.HydraOverrides"},
        "--input-data-uri",
        "",
    ]
    with pytest.raises(ConfigError, match=r"step Prepare.*ContainerArguments\[3\] is empty"):
        preflight.check_start(definition, {}, None)


def _defaults(definition: dict[str, Any]) -> dict[str, Any]:
    return {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}


def test_request_problems_names_field_and_rule() -> None:
    request = {"AppSpecification": {"ContainerArguments": ["", "x" * 257]}}
    problems = rules.request_problems("Processing", request)
    assert problems[0].startswith("AppSpecification.ContainerArguments[0] is empty")
    assert "ContainerArguments[1]" in problems[1] and "257 characters" in problems[1]
    training = rules.request_problems("Training", {"HyperParameters": {"overrides": "y" * 300}})
    assert training == ["HyperParameters['overrides'] is 300 characters; the service allows 256"]


def test_parameter_limits_are_the_strictest_place_each_reaches(train: Built, tune: Built) -> None:
    for built in (train, tune):
        limits = preflight.parameter_limits(built.definition, _defaults(built.definition))
        assert limits["HydraOverrides"][0] == 256 - len("--overrides=")
        assert limits["InputDataUri"][0] == 256 - len("--input-data-uri=")
        assert "Prepare" in limits["HydraOverrides"][1]
        assert limits["QualityThreshold"][0] == rules.PARAMETER_VALUE_MAX
    long = "seed=1 " + "x" * 240
    with pytest.raises(ConfigError, match=r"HydraOverrides is 247 characters.*allows 244"):
        train.check(HydraOverrides=long)
    with pytest.raises(ConfigError, match="1024"):
        train.check(ProcessingInstanceType="m" * 1025)


def test_empty_value_clears_or_is_refused(train: Built) -> None:
    assert train.check(HydraOverrides="", InputDataUri="") == {
        "HydraOverrides": UNSET,
        "InputDataUri": UNSET,
    }
    with pytest.raises(ConfigError, match="ModelApprovalStatus= is empty"):
        train.check(ModelApprovalStatus="")
    with pytest.raises(ConfigError, match="not one of its allowed values: Approved"):
        train.check(ModelApprovalStatus="approved")
    with pytest.raises(ConfigError, match=r"not a valid Float value \(a finite number\)"):
        train.check(QualityThreshold="nan")
    with pytest.raises(ConfigError, match=r"Unknown pipeline parameter.*Nope"):
        train.check(Nope="1")


# ------------------------------------------------------------- item 4: tune-mode rules


@pytest.mark.parametrize(
    ("override", "phrase"),
    [
        ("model=glm_poisson", "cannot switch models"),
        ("model.learning_rate=0.05", "the tuning job sets model.learning_rate itself"),
        ("tuning.max_jobs=3", "read only when the pipeline is built"),
        ("sagemaker.training_instance_type=ml.c5.xlarge", "read only when the pipeline is built"),
        ("pipeline=train", "read only when the pipeline is built"),
        ("deploy.mode=serverless", "read only when the pipeline is built"),
    ],
)
def test_tuning_pipeline_refuses_what_it_cannot_honour(
    tune: Built, override: str, phrase: str
) -> None:
    with pytest.raises(ConfigError, match=phrase) as err:
        tune.check(HydraOverrides=override)
    assert "upsert" in str(err.value).lower()


def test_tuning_pipeline_accepts_data_and_untuned_keys(tune: Built) -> None:
    assert tune.check(HydraOverrides="data.n_rows=5000 model.max_iter=50 seed=3")


def test_train_pipeline_may_switch_models_at_start(train: Built) -> None:
    assert train.check(HydraOverrides="model=glm_poisson model.alpha=0.01")
    with pytest.raises(ConfigError, match="read only when the pipeline is built"):
        train.check(HydraOverrides="sagemaker.bucket=other")


# ---------------------------------------------------- item 6: overrides checked at start


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ("model.max_leaf_nodez=3", "max_leaf_nodez"),
        ("model=nope", "nope"),
        ("data.n_rows=many", "data.n_rows"),
        ("model.max_leaf_nodes='64", "cannot be parsed"),
    ],
)
def test_bad_override_fails_at_start_naming_the_key(
    train: Built, overrides: str, named: str
) -> None:
    with pytest.raises(ConfigError, match="HydraOverrides") as err:
        train.check(HydraOverrides=overrides)
    assert named in str(err.value)


# ------------------------------------------------------- item 9: where the data may be


def test_input_data_outside_the_project_prefix_is_refused(train: Built) -> None:
    with pytest.raises(ConfigError, match=READABLE):
        train.check(InputDataUri="s3://someone-elses-bucket/claims.csv")
    with pytest.raises(ConfigError, match="must be an s3:// URI"):
        train.check(InputDataUri="/home/me/claims.csv")
    other = "s3://shared-data/claims.csv"
    values = preflight.check_start(
        train.definition, {"InputDataUri": other}, train.channel, allow_any_input=True
    )
    assert values == {"InputDataUri": other}


def test_readable_prefix_is_what_the_role_may_read() -> None:
    """The check's prefix is the one the execution role's policy grants."""
    text = TEMPLATE.read_text()
    assert 'Resource: !Sub "${DataBucket.Arn}/${S3Prefix}/*"' in text
    assert compose(BASE).sagemaker.prefix == "claim-frequency"


# ---------------------------------------------------------------- item 7: experiments


def test_definition_and_role_agree_on_experiments(train: Built, tune: Built) -> None:
    role_actions = _role_actions()
    experiments = {a for a in role_actions if "Experiment" in a or "Trial" in a}
    for built in (train, tune):
        if built.definition.get("PipelineExperimentConfig"):
            assert experiments, "the definition uses Experiments but the role may not"
        else:
            assert not experiments, "the role grants Experiments the pipeline does not use"
    assert train.definition.get("PipelineExperimentConfig") is None


def _role_actions() -> set[str]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load(TEMPLATE.read_text(), Loader=Loader)
    actions: set[str] = set()
    for resource in template["Resources"].values():
        if resource.get("Type") != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                found = statement.get("Action", [])
                actions |= {found} if isinstance(found, str) else set(found)
    return actions


# --------------------------------------------------------------- item 8 and 10: smaller


def test_caching_is_off_by_default(train: Built) -> None:
    prepare = next(s for s in rules.job_steps(train.definition) if s["Name"] == "Prepare")
    assert prepare.get("CacheConfig", {}).get("Enabled") is False


def test_tuning_jobs_encrypt_their_volumes_like_training(tune: Built) -> None:
    tuning = next(s for s in rules.job_steps(tune.definition) if s["Type"] == "Tuning")
    resources = tuning["Arguments"]["TrainingJobDefinition"]["ResourceConfig"]
    assert resources["VolumeKmsKeyId"].startswith("arn:aws:kms:")
    assert tuning["Arguments"]["HyperParameterTuningJobConfig"]["RandomSeed"] == 0


@pytest.mark.parametrize(("seed", "expected"), [("null", None), ("7", 7)])
def test_tuning_seed_rule(seed: str, expected: int | None, tmp_path: Path) -> None:
    """One rule for local and SageMaker tuning: null is unseeded, an integer seeds."""
    built = Built([*BASE, "pipeline=tune", f"tuning.seed={seed}"], tmp_path)
    tuning = next(s for s in rules.job_steps(built.definition) if s["Type"] == "Tuning")
    assert tuning["Arguments"]["HyperParameterTuningJobConfig"].get("RandomSeed") == expected


def test_tuning_a_model_without_a_search_space_is_a_clear_error(tmp_path: Path, capsys) -> None:
    out = tmp_path / "d.json"
    args = ["definition", "--out", str(out), *BASE, "pipeline=tune", "model=constant"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "model 'constant' has none" in err and "Traceback" not in err
    assert not out.exists()


def test_overrides_may_follow_the_flags(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    assert cli.main(["definition", *BASE, "--out", str(out), "model=glm_poisson"]) == 0
    assert out.is_file()
    with pytest.raises(SystemExit):
        cli.main(["definition", *BASE, "--nope"])


def test_only_the_builder_touches_the_sagemaker_sdk() -> None:
    """aws.py, preflight.py and service_rules.py use boto3 only (fast commands, no SDK import)."""
    import ast

    root = Path(__file__).resolve().parents[2]
    for name in (
        "pipelines/sagemaker/aws.py",
        "pipelines/sagemaker/preflight.py",
        "executor/service_rules.py",
        "pipelines/sagemaker/cli.py",
    ):
        tree = ast.parse((root / name).read_text())
        modules = {
            node.module if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [node])
        }
        assert not any(str(m).startswith("sagemaker") for m in modules), (name, modules)


# ------------------------------------------------ the account's quotas, before a start


def test_quota_needs_follow_the_start_values(train: Built, tune: Built) -> None:
    needs = {
        (n.step, n.instance_type, n.usage, n.per_job, n.parallel_jobs)
        for n in quotas.needs(train.definition, {"TrainingInstanceType": "ml.c5.2xlarge"})
    }
    assert needs == {
        ("Prepare", "ml.m5.xlarge", quotas.PROCESSING, 1, 1),
        ("Train", "ml.c5.2xlarge", quotas.TRAINING, 1, 1),
        ("Evaluate", "ml.m5.xlarge", quotas.PROCESSING, 1, 1),
    }
    (tuning,) = [n for n in quotas.needs(tune.definition, {}) if n.step == "Tune"]
    assert (tuning.usage, tuning.parallel_jobs) == (quotas.TRAINING, 2)


def test_a_quota_of_zero_refuses_the_start_naming_the_quota(train: Built) -> None:
    name = "ml.m5.xlarge for training job usage"
    client = quota_client({name: 0.0}, {})
    with pytest.raises(ConfigError, match=f"Step Train needs 1 ml.m5.xlarge.*'{name}' is 0"):
        quotas.check_definition(client, train.definition, {})


def test_parallel_jobs_over_the_quota_queue_with_a_warning(tune: Built, capsys) -> None:
    applied = {"ml.m5.xlarge for processing job usage": 4.0}
    defaults = {"ml.m5.xlarge for training job usage": 1.0}  # no applied value: the default
    quotas.check_definition(quota_client(applied, defaults), tune.definition, {})
    err = capsys.readouterr().err
    assert "Step Tune runs 2 jobs at a time" in err and "will queue" in err


def test_quotas_unreadable_warn_and_go_on(train: Built, capsys) -> None:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("service-quotas", region_name=REGION)
    stub = Stubber(client)
    stub.add_client_error("list_service_quotas", "AccessDeniedException", "not allowed")
    stub.activate()
    quotas.check_definition(client, train.definition, {})
    assert "could not read the account's SageMaker quotas (AccessDeniedException)" in (
        capsys.readouterr().err
    )


# ------------------------------- one mechanism: each job's request checked at start


def test_start_refuses_an_instance_type_the_service_does_not_have(train: Built) -> None:
    """The executor's request checks on the resolved requests, enums included."""
    with pytest.raises(ConfigError, match=r"step Prepare: .*'ml\.bogus\.huge' is not one of"):
        train.check(ProcessingInstanceType="ml.bogus.huge")


def test_start_refuses_instance_storage_with_the_pipelines_kms_key(tune: Built) -> None:
    """The key is fixed at upsert, the instance type at start: their combination is checked."""
    with pytest.raises(ConfigError, match=r"step Tune: .*'ml\.r5d\.xlarge'.*VolumeKmsKeyId"):
        tune.check(TrainingInstanceType="ml.r5d.xlarge")
    assert tune.check(TrainingInstanceType="ml.c5.2xlarge") == {
        "TrainingInstanceType": "ml.c5.2xlarge"
    }
