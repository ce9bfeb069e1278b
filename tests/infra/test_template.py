"""Static checks of ``infra/template.yaml``: linters and the security properties it promises."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conf import compose
from conf.schema import PipelineConfig, SageMakerConfig, ScheduleConfig
from infra import TEMPLATE_PATH
from infra.cli import OUTPUT_KEYS
from infra.image.registry import REGISTERED_PREFIX

BIN = Path(sys.executable).parent
# Actions IAM only grants on Resource "*": each such statement must say why.
STAR_RESOURCE_ACTIONS = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}


def _statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    policies = template["Resources"][role]["Properties"]["Policies"]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


LINTERS = {
    "cfn-lint": [str(BIN / "cfn-lint"), str(TEMPLATE_PATH)],
    # Without --quiet, the JSON report also lists the skipped checks;
    # --skip-download keeps checkov from fetching guideline links online.
    "checkov": [
        str(BIN / "checkov"),
        *("-f", str(TEMPLATE_PATH), "--framework", "cloudformation"),
        *("--compact", "--skip-download", "-o", "json"),
    ],
}


# checkov is not installed on Python 3.13 (see pyproject.toml): its test is skipped there.
HAS_CHECKOV = Path(LINTERS["checkov"][0]).is_file()


class Linters:
    """The linters, started together (each takes seconds) and read on first use."""

    def __init__(self) -> None:
        self._procs = {
            name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, cmd in LINTERS.items()
            if Path(cmd[0]).is_file()
        }
        self._done: dict[str, subprocess.CompletedProcess[str]] = {}

    def __getitem__(self, name: str) -> subprocess.CompletedProcess[str]:
        if name not in self._done:
            proc = self._procs[name]
            out, err = proc.communicate(timeout=300)
            self._done[name] = subprocess.CompletedProcess(LINTERS[name], proc.returncode, out, err)
        return self._done[name]

    def close(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def lint() -> Iterator[Linters]:
    """cfn-lint and checkov on the template."""
    linters = Linters()
    yield linters
    linters.close()


def test_cfn_lint_reports_nothing(lint: Linters) -> None:
    result = lint["cfn-lint"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.skipif(not HAS_CHECKOV, reason="checkov is not installed on Python 3.13")
def test_checkov_passes_with_documented_skips(template: dict[str, Any], lint: Linters) -> None:
    result = lint["checkov"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["summary"]["failed"] == 0
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] >= 30

    declared = {
        (f"{resource['Type']}.{name}", skip["id"]): skip.get("comment", "")
        for name, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    assert declared, "expected the documented skips"
    assert all(len(comment) > 30 for comment in declared.values()), declared
    applied = {(c["resource"], c["check_id"]) for c in report["results"]["skipped_checks"]}
    assert applied == set(declared), "every skip in the template is one checkov applies"


@pytest.mark.parametrize("role", ["ExecutionRole", "SchedulerRole"])
def test_roles_have_no_wildcard_actions(template: dict[str, Any], role: str) -> None:
    for statement in _statements(template, role):
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            assert "*" not in action, (role, statement["Sid"])
        if "*" in _as_list(statement["Resource"]):
            assert set(_as_list(statement["Action"])) <= STAR_RESOURCE_ACTIONS, statement["Sid"]


def test_star_resources_are_explained_in_comments(template: dict[str, Any]) -> None:
    lines = TEMPLATE_PATH.read_text().splitlines()
    star_sids = [s["Sid"] for s in _statements(template, "ExecutionRole") if s["Resource"] == "*"]
    assert star_sids
    for sid in star_sids:
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- Sid: {sid}")
        assert lines[index - 1].strip().startswith("#"), f"no comment above {sid}"


def test_pass_role_only_to_sagemaker_and_only_itself(template: dict[str, Any]) -> None:
    role_name = template["Resources"]["ExecutionRole"]["Properties"]["RoleName"]["Fn::Sub"]
    passes = [s for s in _statements(template, "ExecutionRole") if s["Action"] == "iam:PassRole"]
    assert len(passes) == 1
    (statement,) = passes
    assert statement["Resource"]["Fn::Sub"].endswith(f":role/{role_name}")
    condition = statement["Condition"]["StringEquals"]
    assert condition == {"iam:PassedToService": "sagemaker.amazonaws.com"}


def test_execution_role_reaches_only_its_prefix_key_and_group(template: dict[str, Any]) -> None:
    statements = {s["Sid"]: s for s in _statements(template, "ExecutionRole")}
    for sid in ("ReadWriteData", "ReadConfigs"):
        assert statements[sid]["Resource"]["Fn::Sub"].endswith("/${S3Prefix}/*")
    listing = statements["ListOnlyTheProjectPrefix"]["Condition"]["StringLike"]["s3:prefix"]
    assert {"Ref": "S3Prefix"} in listing
    assert statements["UseTheProjectKey"]["Resource"] == {"Fn::GetAtt": ["Key", "Arn"]}
    registry = statements["RegisterModelsInTheProjectGroup"]
    assert all("${ModelPackageGroupName}" in r["Fn::Sub"] for r in registry["Resource"])
    assert "sagemaker:CreateModelPackage" in registry["Action"]
    logs = statements["WriteJobLogs"]["Resource"]
    assert all(":log-group:/aws/sagemaker/" in r["Fn::Sub"] for r in logs)
    jobs = statements["RunProcessingAndTrainingJobs"]["Resource"]
    assert all(re.search(r":(processing|training)-job/", r["Fn::Sub"]) for r in jobs)
    assert not any(r["Fn::Sub"].endswith("-job/*") for r in jobs)


def test_scheduler_role_only_starts_this_pipeline(template: dict[str, Any]) -> None:
    properties = template["Resources"]["SchedulerRole"]["Properties"]
    (trust,) = properties["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    (statement,) = _statements(template, "SchedulerRole")
    assert statement["Action"] == "sagemaker:StartPipelineExecution"
    assert statement["Resource"]["Fn::Sub"].endswith(":pipeline/${PipelineName}")


@pytest.mark.parametrize("bucket", ["DataBucket", "ConfigBucket"])
def test_buckets_encrypted_versioned_private_tls_only(
    template: dict[str, Any], bucket: str
) -> None:
    resources = template["Resources"]
    properties = resources[bucket]["Properties"]
    (sse,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": ["Key", "Arn"]},
    }
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    rules = properties["LifecycleConfiguration"]["Rules"]
    assert any("NoncurrentVersionExpiration" in rule for rule in rules)
    if bucket == "ConfigBucket":
        assert any("ExpirationInDays" in rule for rule in rules)

    (policy,) = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(deny["Resource"]) == 2  # the bucket and its objects


def test_key_rotates_and_repository_scans_encrypts_expires(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    assert resources["Key"]["Properties"]["EnableKeyRotation"] is True
    repo = resources["Repository"]["Properties"]
    assert repo["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert repo["EncryptionConfiguration"]["EncryptionType"] == "KMS"
    text = repo["LifecyclePolicy"]["LifecyclePolicyText"]["Fn::Sub"]
    text = text.replace("${UntaggedImageCount}", "5").replace("${TaggedImageCount}", "20")
    keep, untagged, tagged = sorted(json.loads(text)["rules"], key=lambda r: r["rulePriority"])
    assert untagged["selection"] == {
        "tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 5
    }  # fmt: skip
    assert tagged["selection"]["tagPatternList"] == ["*"]
    assert tagged["selection"]["countNumber"] == 20
    # Evaluated first, so no later rule can expire an image a model package uses.
    assert keep["selection"]["tagPrefixList"] == [REGISTERED_PREFIX]
    assert keep["selection"]["countNumber"] >= 10000
    assert repo["ImageTagMutability"] == "IMMUTABLE"
    assert resources["ModelPackageGroup"]["Type"] == "AWS::SageMaker::ModelPackageGroup"


def test_outputs_cover_every_config_key(template: dict[str, Any]) -> None:
    required = set(OUTPUT_KEYS) | {"EcrRepositoryUri"}
    assert required <= set(template["Outputs"])
    schemas = {"sagemaker": SageMakerConfig, "schedule": ScheduleConfig, "pipeline": PipelineConfig}
    for dotted in OUTPUT_KEYS.values():
        group, key = dotted.split(".")
        assert key in schemas[group].__dataclass_fields__, dotted
    defaults = {name: p.get("Default") for name, p in template["Parameters"].items()}
    assert defaults["ProjectName"] == defaults["PipelineName"] == "claim-frequency"
    cfg = compose()  # the config's defaults, as the YAML states them
    assert defaults["ModelPackageGroupName"] == cfg.sagemaker.model_package_group
    assert defaults["S3Prefix"] == cfg.sagemaker.prefix
    assert defaults["PipelineName"] == cfg.pipeline.name
