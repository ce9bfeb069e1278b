"""``infra.cli config``: stack outputs -> conf/sagemaker/stack.yaml -> the composed config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

import conf
from infra.cli import InfraError, config_values
from infra.image.record import default_record_path
from tests.infra.support import REPO_ROOT, STACK_NAME


def _config_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "config", *args],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_cli_writes_a_file_the_default_composition_picks_up(
    deployed: dict[str, str], conf_copy: Path
) -> None:
    target = conf_copy / "sagemaker" / "stack.yaml"
    result = _config_cli("--stack-name", STACK_NAME, "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_text().startswith("# @package _global_\n")

    cfg = conf.compose([])
    sm = cfg.sagemaker
    assert sm.region == deployed["Region"]
    assert sm.role_arn == deployed["ExecutionRoleArn"]
    assert sm.bucket == deployed["DataBucket"]
    assert sm.config_bucket == deployed["ConfigBucket"]
    assert sm.prefix == deployed["S3Prefix"]
    assert sm.image_uri is None  # nothing pushed yet: `make push-image` records one
    assert sm.ecr_repository == deployed["EcrRepositoryName"]
    assert sm.model_package_group == deployed["ModelPackageGroupName"]
    assert sm.kms_key_id == deployed["KmsKeyArn"]
    assert cfg.schedule.role_arn == deployed["SchedulerRoleArn"]
    assert cfg.pipeline.name == deployed["PipelineName"]
    # Merged over the defaults, not in place of them.
    assert sm.tags == {"project": "claim-frequency"}
    assert sm.training_instance_type == "ml.m5.xlarge"

    # Command-line overrides and experiments still win over the stack file.
    cfg = conf.compose(["sagemaker.bucket=elsewhere", "experiment=prod"])
    assert cfg.sagemaker.bucket == "elsewhere"
    assert cfg.sagemaker.training_instance_type == "ml.m5.2xlarge"
    assert cfg.sagemaker.role_arn == deployed["ExecutionRoleArn"]


def test_composition_without_the_stack_file_is_unchanged(conf_copy: Path) -> None:
    assert not (conf_copy / "sagemaker" / "stack.yaml").exists()
    cfg = conf.compose([])
    assert cfg.sagemaker.role_arn is None
    assert cfg.sagemaker.bucket is None
    assert cfg.sagemaker.image_uri is None
    assert cfg.schedule.role_arn is None
    assert cfg.sagemaker.prefix == "claim-frequency"


def test_a_typo_in_the_stack_file_fails_composition(conf_copy: Path) -> None:
    (conf_copy / "sagemaker" / "stack.yaml").write_text(
        "# @package _global_\nsagemaker:\n  role_arnn: arn:aws:iam::123456789012:role/x\n"
    )
    with pytest.raises(ConfigCompositionException, match="role_arnn"):
        conf.compose([])


def test_config_cli_for_a_missing_stack_explains(aws: str, tmp_path: Path) -> None:
    target = tmp_path / "stack.yaml"
    result = _config_cli("--stack-name", "no-such-stack", "--output", str(target))
    assert result.returncode == 2  # a problem the user can fix, as in every command
    assert "no-such-stack" in result.stderr and "make deploy-infra" in result.stderr
    assert "Traceback" not in result.stderr
    assert not target.exists()


def test_incomplete_outputs_are_rejected() -> None:
    with pytest.raises(InfraError, match="SchedulerRoleArn"):
        config_values({"Region": "us-east-1", "DataBucket": "b"})


def test_default_target_is_the_gitignored_stack_file() -> None:
    path = default_record_path()
    assert path.relative_to(REPO_ROOT).as_posix() == "conf/sagemaker/stack.yaml"
    ignored = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "conf/sagemaker/stack.yaml" in ignored
