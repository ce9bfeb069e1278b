"""container.image: command lines, ECR login against the local AWS endpoint, tool checks.

No container engine runs here, so a small stand-in CLI records what it is asked
to do (arguments, stdin and working directory) in place of docker or finch.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import boto3
import pytest

from container import image
from steps.contract import MODEL_FILE

ACCOUNT = "123456789012"  # the local endpoint's default account


@pytest.fixture
def fake_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A container CLI stand-in; returns the log file it appends JSON lines to."""
    log = tmp_path / "tool.log"
    script = tmp_path / "fake-docker"
    script.write_text(
        "#!/bin/sh\n"
        'stdin=""\n'
        'if [ "$1" = login ]; then stdin=$(cat); fi\n'
        f'printf "%s\\0" "$PWD" "$stdin" "$@" >> "{log}"\n'
        f'printf "\\n" >> "{log}"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CONTAINER_TOOL", str(script))
    return log


def calls(log: Path) -> list[dict]:
    """The stand-in's invocations: working directory, stdin and arguments."""
    out = []
    for line in log.read_text().split("\n"):
        if line:
            cwd, stdin, *args = line.split("\0")[:-1]
            out.append({"cwd": cwd, "stdin": stdin, "args": args})
    return out


def test_command_lines() -> None:
    assert image.build_command("docker", "claim-frequency:abc") == [
        "docker", "build", "--platform", "linux/amd64",
        "-f", "container/Dockerfile", "-t", "claim-frequency:abc", ".",
    ]  # fmt: skip
    assert image.login_command("finch", "1.dkr.ecr.eu-west-1.amazonaws.com") == [
        "finch", "login", "--username", "AWS", "--password-stdin",
        "1.dkr.ecr.eu-west-1.amazonaws.com",
    ]  # fmt: skip
    assert image.tag_command("docker", "a:1", "r/a:1") == ["docker", "tag", "a:1", "r/a:1"]
    assert image.push_command("docker", "r/a:1") == ["docker", "push", "r/a:1"]
    run = image.run_command("docker", "a:1", Path("/tmp/tree"), "prepare", "data.n_rows=10", "1:2")
    assert run == [
        "docker", "run", "--rm", "--platform", "linux/amd64", "-v",
        f"{Path('/tmp/tree').resolve()}:/opt/ml", "--user", "1:2",
        "a:1", "prepare", "--overrides", "data.n_rows=10",
    ]  # fmt: skip


def test_build_context_is_the_repository_root() -> None:
    assert (image.REPO_ROOT / image.DOCKERFILE).is_file()
    assert (image.REPO_ROOT / ".dockerignore").is_file()


def test_missing_tool_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONTAINER_TOOL", "no-such-container-tool")
    for argv in (["build"], ["push"], ["run-local"]):
        assert image.main([*argv, "--tag", "t"]) == 2
        err = capsys.readouterr().err
        assert "'no-such-container-tool' is not installed" in err
        assert "CONTAINER_TOOL" in err


def test_build_runs_the_tool_from_the_repository_root(
    fake_tool: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert image.main(["build", "--tag", "t1", "sagemaker.ecr_repository=other-repo"]) == 0
    (call,) = calls(fake_tool)
    assert Path(call["cwd"]).resolve() == image.REPO_ROOT
    assert call["args"] == image.build_command("x", "other-repo:t1")[1:]
    assert "Built other-repo:t1" in capsys.readouterr().out


def test_push_logs_in_to_ecr_tags_and_pushes(
    aws: str, fake_tool: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("ecr", region_name="eu-west-1").create_repository(repositoryName="claims")
    argv = ["push", "--tag", "t1", "sagemaker.region=eu-west-1", "sagemaker.ecr_repository=claims"]
    assert image.main(argv) == 0
    registry = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    uri = f"{registry}/claims:t1"
    login, tag, push = calls(fake_tool)
    assert login["args"] == ["login", "--username", "AWS", "--password-stdin", registry]
    assert login["stdin"] == f"{ACCOUNT}-auth-token"  # the password, never on the command line
    assert tag["args"] == ["tag", "claims:t1", uri]
    assert push["args"] == ["push", uri]
    out = capsys.readouterr().out
    assert f"sagemaker.image_uri={uri}" in out
    assert "auth-token" not in out


def test_registry_credentials_from_the_local_endpoint(aws: str) -> None:
    ecr = boto3.client("ecr", region_name="us-east-1")
    registry, password = image.registry_credentials(ecr)
    assert registry == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
    assert password == f"{ACCOUNT}-auth-token"


def test_push_to_a_missing_repository_is_a_clear_error(
    aws: str, fake_tool: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert image.main(["push", "--tag", "t1", "sagemaker.region=us-east-1"]) == 2
    err = capsys.readouterr().err
    assert "ECR repository 'claim-frequency' does not exist in us-east-1" in err
    assert not fake_tool.exists()  # nothing was logged in, tagged or pushed


def test_failing_tool_command_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "broken-docker"
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o755)
    monkeypatch.setenv("CONTAINER_TOOL", str(script))
    assert image.main(["build", "--tag", "t1"]) == 2
    assert "failed with exit code 3" in capsys.readouterr().err


def test_run_local_prepares_an_opt_ml_tree_and_runs_the_job(
    fake_tool: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert image.main(["run-local", "--tag", "t1", "train", "data.n_rows=2000"]) == 0
    (call,) = calls(fake_tool)
    args = call["args"]
    mount = args[args.index("-v") + 1]
    tree = Path(mount.removesuffix(":/opt/ml"))
    try:
        assert args[-2:] == ["claim-frequency:t1", "train"]
        assert args[args.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"
        data = tree / "input" / "data"
        assert (data / "train" / "data.parquet").is_file()
        assert (data / "validation" / "data.parquet").is_file()
        assert (data / "config" / "overrides.yaml").is_file()
        assert "n_rows: 2000" in (data / "config" / "config.yaml").read_text()
        params = json.loads((tree / "input" / "config" / "hyperparameters.json").read_text())
        assert params == {"overrides": ""}
        assert f"kept at {tree}" in capsys.readouterr().out
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def test_run_local_evaluate_tree_holds_a_model_archive(tmp_path: Path) -> None:
    image.prepare_tree(tmp_path, "evaluate", ["data.n_rows=2000", "model=glm_poisson"])
    inputs = tmp_path / "processing" / "input"
    with tarfile.open(inputs / "model" / "model.tar.gz") as tar:
        assert MODEL_FILE in tar.getnames()
    assert (inputs / "test" / "data.parquet").is_file()
    assert (inputs / "config" / "overrides.yaml").is_file()
