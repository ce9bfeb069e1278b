"""Deploy the template to the local CloudFormation endpoint with ``infra.cli``."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.cloudformation.parsing import get_model_map

from infra.cli import InfraError, deploy_stack, stack_parameters
from tests.infra.support import REPO_ROOT, STACK_NAME, UNSUPPORTED_BY_MOTO, strip_for_moto


def _document(response: dict[str, Any]) -> dict[str, Any]:
    """A role policy document from GetRolePolicy.

    moto returns inline policies created through CloudFormation as the Python
    repr of the dict rather than as JSON.
    """
    document = response["PolicyDocument"]
    if isinstance(document, dict):
        return document
    try:
        return json.loads(document)
    except json.JSONDecodeError:
        return ast.literal_eval(document)


def test_only_types_moto_cannot_deploy_are_stripped(template: dict[str, Any]) -> None:
    supported = set(get_model_map())
    stripped, removed = strip_for_moto(template)
    assert removed == {"ModelPackageGroup", "DataBucketPolicy", "ConfigBucketPolicy"}
    assert not set(UNSUPPORTED_BY_MOTO) & supported, "moto supports it now: stop stripping it"
    assert {r["Type"] for r in stripped["Resources"].values()} <= supported
    assert set(template["Outputs"]) - set(stripped["Outputs"]) == {"ModelPackageGroupArn"}


def test_deploy_creates_the_resources(deployed: dict[str, str]) -> None:
    account = boto3.client("sts").get_caller_identity()["Account"]
    region = boto3.session.Session().region_name
    assert deployed["Region"] == region
    assert deployed["DataBucket"] == f"claim-frequency-data-{account}-{region}"
    assert deployed["ConfigBucket"] == f"claim-frequency-config-{account}-{region}"
    key_arn = deployed["KmsKeyArn"]

    s3 = boto3.client("s3")
    for bucket in (deployed["DataBucket"], deployed["ConfigBucket"]):
        (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ]
        default = rule["ApplyServerSideEncryptionByDefault"]
        assert default == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}

    kms = boto3.client("kms")
    assert kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"] is True
    aliases = kms.list_aliases(KeyId=key_arn)["Aliases"]
    assert [a["AliasName"] for a in aliases] == ["alias/claim-frequency"]

    (repo,) = boto3.client("ecr").describe_repositories(repositoryNames=["claim-frequency"])[
        "repositories"
    ]
    assert repo["repositoryUri"] == deployed["EcrRepositoryUri"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    # moto's ECR handler keeps the scan and encryption settings in CloudFormation's
    # casing and reports them empty: test_template checks them in the template.

    iam = boto3.client("iam")
    role_name = deployed["ExecutionRoleArn"].rsplit("/", 1)[1]
    assert sorted(iam.list_role_policies(RoleName=role_name)["PolicyNames"]) == [
        "buckets",
        "image-and-logs",
        "pipeline-jobs",
    ]
    document = _document(iam.get_role_policy(RoleName=role_name, PolicyName="buckets"))
    resources = {s["Sid"]: s["Resource"] for s in document["Statement"]}
    bucket_arn = f"arn:aws:s3:::{deployed['DataBucket']}"
    assert resources["ReadWriteData"] == f"{bucket_arn}/claim-frequency/*"
    assert resources["UseTheProjectKey"] == key_arn

    scheduler = iam.get_role(RoleName=deployed["SchedulerRoleArn"].rsplit("/", 1)[1])["Role"]
    (trust,) = scheduler["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": account}}
    (policy,) = iam.list_role_policies(RoleName=scheduler["RoleName"])["PolicyNames"]
    start_doc = _document(iam.get_role_policy(RoleName=scheduler["RoleName"], PolicyName=policy))
    assert start_doc["Statement"][0]["Resource"] == (
        f"arn:aws:sagemaker:{region}:{account}:pipeline/claim-frequency"
    )


def test_redeploy_is_up_to_date_and_updates_keep_names(
    deployed: dict[str, str], moto_template: Path
) -> None:
    cfn = boto3.client("cloudformation")
    messages: list[str] = []
    again = deploy_stack(cfn, STACK_NAME, moto_template, poll_seconds=0.05, log=messages.append)
    assert again == deployed
    assert messages[-1].endswith("up to date: no changes.")

    messages.clear()
    deploy_stack(cfn, STACK_NAME, moto_template, {"UntaggedImageCount": "9"}, 0.05, messages.append)
    assert messages[-1].endswith("updated.")
    params = {
        p["ParameterKey"]: p["ParameterValue"]
        for p in cfn.describe_stacks(StackName=STACK_NAME)["Stacks"][0]["Parameters"]
    }
    assert params["UntaggedImageCount"] == "9"
    assert params["ProjectName"] == "claim-frequency"


def test_parameters_default_on_create_and_stay_on_update() -> None:
    defaults = {"ProjectName": "claim-frequency", "UntaggedImageCount": "5", "Bucket": ""}
    defaults |= {"NoDefault": None, "Added": "x"}
    created = stack_parameters({"UntaggedImageCount": "9"}, defaults)
    assert created == [
        {"ParameterKey": "Added", "ParameterValue": "x"},
        {"ParameterKey": "Bucket", "ParameterValue": ""},
        {"ParameterKey": "ProjectName", "ParameterValue": "claim-frequency"},
        {"ParameterKey": "UntaggedImageCount", "ParameterValue": "9"},
    ]
    previous = {"ProjectName": "other", "UntaggedImageCount": "5", "Bucket": "", "Gone": "1"}
    updated = stack_parameters({"UntaggedImageCount": "7"}, defaults, previous)
    assert updated == [
        {"ParameterKey": "Bucket", "UsePreviousValue": True},
        {"ParameterKey": "ProjectName", "UsePreviousValue": True},
        {"ParameterKey": "UntaggedImageCount", "ParameterValue": "7"},
    ]
    with pytest.raises(InfraError, match="Typo"):
        stack_parameters({"Typo": "1"}, defaults)


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _bare_env() -> dict[str, str]:
    """The environment without any AWS settings (and no config files or metadata service)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
    )
    return env


@pytest.mark.parametrize(
    ("command", "extra_env", "named"),
    [
        (
            "deploy",
            {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
            ("AWS_REGION", "AWS_PROFILE"),
        ),
        ("config", {"AWS_REGION": "us-east-1"}, ("AWS_PROFILE", "AWS_ACCESS_KEY_ID")),
    ],
    ids=["no-region", "no-credentials"],
)
def test_cli_without_region_or_credentials_says_what_to_set(
    command: str, extra_env: dict[str, str], named: tuple[str, ...]
) -> None:
    result = _run_cli(command, env={**_bare_env(), **extra_env})
    assert result.returncode == 2  # the same rule as every other command
    assert all(name in result.stderr for name in named), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_cli_deploy_against_the_local_endpoint(aws: str, moto_template: Path) -> None:
    result = _run_cli(
        "deploy",
        "--stack-name",
        "cli-stack",
        "--untagged-image-count",
        "3",
        "--template",
        str(moto_template),
        "--poll-seconds",
        "0.1",
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    assert "Stack cli-stack created." in result.stdout
    assert "ExecutionRoleArn" in result.stdout
    stack = boto3.client("cloudformation").describe_stacks(StackName="cli-stack")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {"ParameterKey": "UntaggedImageCount", "ParameterValue": "3"} in stack["Parameters"]


def test_cli_deploy_with_a_missing_template_is_one_line(aws: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    result = _run_cli("deploy", "--template", str(missing), env=dict(os.environ))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: Cannot read the template '{missing}': No such file or directory."
    )
