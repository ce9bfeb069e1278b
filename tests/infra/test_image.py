"""infra.image: engine choice, source tags, config, command lines, ECR push and record.

The engine here is a small stand-in CLI that records what it is asked to do
(arguments, stdin, working directory, ``tests/infra/standin_engine.py``); the
registry is the local AWS endpoint. The real engine runs the image in tests/image.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import boto3
import pytest

import conf
from infra.cli import pushed_image_uri, write_config
from infra.image import base, build, cli, engine, tag
from infra.image.record import read_record, record_image_uri, write_record
from tests.infra.standin_engine import calls, write_tool

ACCOUNT = "123456789012"  # the local endpoint's default account
REGISTRY = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"digest": "sha256:" + "1" * 64},
    }
)
PODMAN = engine.Engine("podman", "podman", "runc", ("nofile=20000:20000", "nproc=32768:32768"))


@pytest.fixture
def record(conf_copy: Path) -> Path:
    """The record file inside the copy of the config tree that composition reads."""
    return conf_copy / "sagemaker" / "stack.yaml"


@pytest.fixture
def clean_source(monkeypatch: pytest.MonkeyPatch) -> tag.SourceTag:
    """The source tag of a committed tree (the tree under test may have edits)."""
    clean = tag.SourceTag("0123456789ab", False)
    monkeypatch.setattr(cli, "source_tag", lambda: clean)
    return clean


# --------------------------------------------------------------------------- engine


def test_detection_passes_over_a_cli_without_a_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_tool(bin_dir / "docker", tmp_path / "docker.log", info_fails=True)
    write_tool(bin_dir / "podman", tmp_path / "podman.log")
    monkeypatch.setenv("PATH", str(bin_dir))
    found = engine.detect_engine({})
    assert found.name == "podman"
    assert calls(tmp_path / "docker.log", skip_info=False)[0]["args"] == ["info"]

    with pytest.raises(engine.ImageError) as err:
        engine.detect_engine({"CONTAINER_TOOL": "docker"})
    assert "'docker info' failed (Cannot connect to the daemon)" in str(err.value)
    assert "CONTAINER_TOOL" in str(err.value)


def test_no_engine_at_all_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CONTAINER_TOOL", raising=False)
    assert cli.main(["build"]) == 2
    err = capsys.readouterr().err
    assert "No working container engine" in err
    assert "'podman' is not installed" in err
    assert "Traceback" not in err


def test_podman_gets_runc_only_where_crun_cannot_run(tmp_path: Path) -> None:
    hybrid = tmp_path / "hybrid"
    (hybrid / "unified").mkdir(parents=True)
    unified = tmp_path / "v2"
    unified.mkdir()
    assert engine.podman_runtime("crun", hybrid, "/usr/sbin/runc") == "runc"
    assert engine.podman_runtime("crun", unified, "/usr/sbin/runc") is None
    assert engine.podman_runtime("runc", hybrid, "/usr/sbin/runc") is None
    with pytest.raises(engine.ImageError, match="install runc"):
        engine.podman_runtime("crun", hybrid, None)


def test_podman_ulimits_only_where_its_defaults_cannot_be_set() -> None:
    low = {"nofile": (20000, 20000), "nproc": (96365, 96365)}
    assert engine.podman_ulimits(0, low, 32768) == ("nofile=20000:20000", "nproc=32768:32768")
    assert engine.podman_ulimits(1000, low, 32768) == ()  # rootless podman keeps the caller's
    high = {"nofile": (2**20, 2**20), "nproc": (2**22, 2**22)}
    assert engine.podman_ulimits(0, high, 4194304) == ()


def test_command_lines() -> None:
    cmd = build.build_command(
        PODMAN, "repo:abc", "abc", base="claim-frequency-base:bookworm", ca_bundle=Path("ca.pem")
    )
    assert cmd[:3] == ["podman", "--runtime", "runc"]
    assert cmd[3:8] == [
        "build",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
    ]
    assert cmd[-1] == "."
    pairs = list(itertools.pairwise(cmd))
    assert ("-f", "container/Dockerfile") in pairs
    assert ("--build-arg", "REVISION=abc") in pairs
    assert ("--build-arg", "BASE_IMAGE=claim-frequency-base:bookworm") in pairs
    assert ("--secret", f"id=ca-bundle,src={Path('ca.pem').resolve()}") in pairs
    # A Docker v2 schema 2 manifest, the only one SageMaker's CreateModel accepts.
    assert ("--format", "docker") in pairs

    docker = build.build_command(engine.Engine("docker", "docker"), "repo:abc", "abc")
    assert docker == [
        "docker", "build", "--platform", "linux/amd64", "-f", "container/Dockerfile",
        "--provenance=false", "--sbom=false", "--output", "type=docker",
        "-t", "repo:abc", "--build-arg", "REVISION=abc", ".",
    ]  # fmt: skip

    run = engine.run_command(
        PODMAN,
        "repo:abc",
        [(Path("/tmp/a"), "/opt/ml/processing/input/config"), (Path("/tmp/b"), "/opt/ml/output")],
        ["prepare", "--overrides=x"],
        entrypoint=["python", "-m", "container.entrypoint"],
        platform=None,
    )
    assert run == [
        "podman", "--runtime", "runc", "run", "--rm", "--network", "none",
        "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
        "-v", f"{Path('/tmp/a').resolve()}:/opt/ml/processing/input/config",
        "-v", f"{Path('/tmp/b').resolve()}:/opt/ml/output",
        "--entrypoint", "python", "repo:abc", "-m", "container.entrypoint",
        "prepare", "--overrides=x",
    ]  # fmt: skip


def test_build_context_is_the_repository_root() -> None:
    assert (engine.REPO_ROOT / build.DOCKERFILE).is_file()
    assert (engine.REPO_ROOT / ".dockerignore").is_file()
    for source in tag.IMAGE_SOURCES:
        assert (engine.REPO_ROOT / source).exists(), source


# ----------------------------------------------------------------------- source tag


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_the_tag_names_the_source_and_only_the_images_sources(tmp_path: Path) -> None:
    for rel in ("steps/a.py", "conf/config.yaml", "README.md", "pyproject.toml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "first")
    clean = tag.source_tag(tmp_path)
    assert not clean.dirty and len(clean.tag) == 12

    (tmp_path / "README.md").write_text("edited\n")
    assert tag.source_tag(tmp_path) == clean  # not part of the image
    _git(tmp_path, "commit", "-q", "-am", "docs")
    assert tag.source_tag(tmp_path) == clean  # committed or not

    (tmp_path / "steps" / "a.py").write_text("x = 2\n")
    first = tag.source_tag(tmp_path)
    assert first.dirty and first.changed == ("steps/a.py",)
    assert first.tag.startswith(f"{clean.tag}-dirty-")
    (tmp_path / "steps" / "a.py").write_text("x = 3\n")
    assert tag.source_tag(tmp_path).tag != first.tag  # another state, another tag

    (tmp_path / "steps" / "a.py").write_text("x = 1\n")
    (tmp_path / "conf" / "new.yaml").write_text("a: 1\n")
    untracked = tag.source_tag(tmp_path)
    assert untracked.dirty and untracked.changed == ("conf/new.yaml",)


# --------------------------------------------------------------------------- config


def test_the_name_follows_the_config_the_project_composes(
    record: Path, clean_source: tag.SourceTag, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["name"]) == 0
    assert capsys.readouterr().out == "claim-frequency:0123456789ab\n"
    write_record(record, {"sagemaker": {"ecr_repository": "from-stack"}})
    assert cli.main(["name"]) == 0
    assert capsys.readouterr().out == "from-stack:0123456789ab\n"  # the stack record is read
    assert cli.main(["name", "sagemaker.ecr_repository=given"]) == 0
    assert capsys.readouterr().out == "given:0123456789ab\n"  # and overrides win


def test_a_bad_override_is_one_line_naming_it(
    clean_source: tag.SourceTag, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["name", "sagemaker.ecr_repositoryy=x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Invalid overrides 'sagemaker.ecr_repositoryy=x'")
    assert "ecr_repositoryy" in err.split(":", 2)[2] and err.count("\n") == 1
    assert cli.main(["name", "sagemaker.ecr_repository=${oc.env:HOME}"]) == 2
    assert "may not read the environment" in capsys.readouterr().err


# ---------------------------------------------------------------------------- build


def test_build_runs_the_engine_from_the_repository_root(
    fake_tool: Path, clean_source: tag.SourceTag, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["build", "--base", "claim-frequency-base:bookworm", "sagemaker.ecr_repository=other"]
    assert cli.main(argv) == 0
    built, inspect = calls(fake_tool)
    assert Path(built["cwd"]).resolve() == engine.REPO_ROOT
    expected = build.build_command(
        engine.Engine("x", "fake-docker"), "other:0123456789ab", "0123456789ab", base=argv[2]
    )
    assert built["args"] == expected[1:]
    assert inspect["args"][:2] == ["image", "inspect"]
    assert "Built other:0123456789ab" in capsys.readouterr().out


def test_a_missing_ca_bundle_is_a_clear_error(
    fake_tool: Path, clean_source: tag.SourceTag, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["build", "--ca-bundle", "/no/such/ca.pem"]) == 2
    assert "--ca-bundle /no/such/ca.pem: no such file" in capsys.readouterr().err
    assert calls(fake_tool) == []


def test_failing_engine_command_is_reported(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clean_source: tag.SourceTag,
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = tmp_path / "broken-docker"
    script.write_text('#!/bin/sh\nif [ "$1" = info ]; then exit 0; fi\nexit 3\n')
    script.chmod(0o755)
    monkeypatch.setenv("CONTAINER_TOOL", str(script))
    assert cli.main(["build"]) == 2
    err = capsys.readouterr().err
    assert "failed with exit code 3" in err
    assert "--ca-bundle" in err  # the hint for a build behind a TLS proxy


# ----------------------------------------------------------------------------- base


def test_the_stand_in_base_never_takes_the_official_name() -> None:
    for name in ("python:3.11.13-slim-bookworm", "docker.io/library/python:3.11", "python"):
        with pytest.raises(engine.ImageError, match="official Python image"):
            base.check_base_name(name)
    base.check_base_name(base.STANDIN_NAME)
    base.check_base_name("registry.example.com/python:3.11")  # someone else's: not ours to judge
    cmd = base.import_command(PODMAN, base.STANDIN_NAME)
    assert f"LABEL {base.STANDIN_LABEL}={base.STANDIN_VALUE}" in cmd
    assert cmd[-2:] == ["-", base.STANDIN_NAME]


# ----------------------------------------------------------------------------- push


PUSH = ["push", "sagemaker.region=eu-west-1", "sagemaker.ecr_repository=claims"]


def test_push_logs_in_tags_pushes_and_records_the_uri_for_upsert(
    aws: str,
    fake_tool: Path,
    clean_source: tag.SourceTag,
    record: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    boto3.client("ecr", region_name="eu-west-1").create_repository(repositoryName="claims")
    assert cli.main([*PUSH, "--record", str(record)]) == 0
    uri = f"{REGISTRY}/claims:0123456789ab"
    inspect, login, tagged, push = calls(fake_tool)
    assert inspect["args"][-1] == "claims:0123456789ab"
    assert login["args"] == ["login", "--username", "AWS", "--password-stdin", REGISTRY]
    assert login["stdin"] == f"{ACCOUNT}-auth-token"  # the password, never on the command line
    assert tagged["args"] == ["tag", "claims:0123456789ab", uri]
    assert push["args"] == ["push", uri]
    out = capsys.readouterr().out
    assert f"Pushed {uri}" in out
    assert "auth-token" not in out
    # Upsert composes the config: the pushed URI is what it now uses.
    assert conf.compose([]).sagemaker.image_uri == uri


def test_push_refuses_to_record_a_manifest_sagemaker_cannot_use(
    aws: str,
    fake_tool: Path,
    clean_source: tag.SourceTag,
    record: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An OCI manifest (podman's default, BuildKit's attestations) is never recorded."""
    oci = "application/vnd.oci.image.manifest.v1+json"
    monkeypatch.setenv("STANDIN_MANIFEST_TYPE", oci)
    boto3.client("ecr", region_name="eu-west-1").create_repository(repositoryName="claims")
    assert cli.main([*PUSH, "--record", str(record)]) == 2
    err = capsys.readouterr().err
    assert f"manifest type {oci}, which SageMaker refuses" in err and "not recorded" in err
    assert not record.exists()


def test_push_refuses_uncommitted_sources_without_the_flag(
    aws: str,
    fake_tool: Path,
    monkeypatch: pytest.MonkeyPatch,
    record: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dirty = tag.SourceTag("0123456789ab-dirty-5f3a9c1e", True, ("steps/train.py",))
    monkeypatch.setattr(cli, "source_tag", lambda: dirty)
    boto3.client("ecr", region_name="eu-west-1").create_repository(repositoryName="claims")
    assert cli.main([*PUSH, "--record", str(record)]) == 2
    err = capsys.readouterr().err
    assert "uncommitted changes (steps/train.py)" in err and "--allow-dirty" in err
    assert calls(fake_tool) == [] and not record.exists()

    assert cli.main([*PUSH, "--allow-dirty", "--record", str(record)]) == 0
    assert calls(fake_tool)[-1]["args"] == ["push", f"{REGISTRY}/claims:{dirty.tag}"]
    assert conf.compose([]).sagemaker.image_uri == f"{REGISTRY}/claims:{dirty.tag}"


def test_push_refuses_an_image_built_on_the_stand_in_base(
    aws: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clean_source: tag.SourceTag,
    record: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = tmp_path / "tool.log"
    labels = json.dumps({base.STANDIN_LABEL: base.STANDIN_VALUE})
    monkeypatch.setenv("CONTAINER_TOOL", str(write_tool(tmp_path / "d", log, labels)))
    boto3.client("ecr", region_name="eu-west-1").create_repository(repositoryName="claims")
    assert cli.main([*PUSH, "--record", str(record)]) == 2
    assert "stand-in base" in capsys.readouterr().err
    assert [c["args"][0] for c in calls(log)] == ["image"]  # inspected, nothing pushed


def test_a_pushed_tag_is_not_pushed_again_and_registered_images_are_kept(
    aws: str,
    fake_tool: Path,
    clean_source: tag.SourceTag,
    record: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ecr = boto3.client("ecr", region_name="eu-west-1")
    ecr.create_repository(repositoryName="claims")
    for name in ("0123456789ab", "old"):
        ecr.put_image(repositoryName="claims", imageManifest=MANIFEST, imageTag=name)
    sm = boto3.client("sagemaker", region_name="eu-west-1")
    sm.create_model_package_group(ModelPackageGroupName="claim-frequency")
    sm.create_model_package(
        ModelPackageGroupName="claim-frequency",
        InferenceSpecification={
            "Containers": [{"Image": f"{REGISTRY}/claims:old"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )
    assert cli.main([*PUSH, "--record", str(record)]) == 0
    assert [c["args"][0] for c in calls(fake_tool)] == ["image"]  # inspected, not pushed
    out = capsys.readouterr().out
    assert "already in ECR" in out and "registered-old" in out
    tags = {t for i in ecr.describe_images(repositoryName="claims")["imageDetails"]
            for t in i.get("imageTags", [])}  # fmt: skip
    assert "registered-old" in tags


def test_push_to_a_missing_repository_is_a_clear_error(
    aws: str,
    fake_tool: Path,
    clean_source: tag.SourceTag,
    record: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["push", "sagemaker.region=us-east-1", "--record", str(record)]) == 2
    err = capsys.readouterr().err
    assert "ECR repository 'claim-frequency' does not exist in us-east-1" in err
    assert not record.exists()


def test_infra_config_keeps_only_an_image_that_was_pushed(aws: str, tmp_path: Path) -> None:
    ecr = boto3.client("ecr", region_name="us-east-1")
    repo_uri = ecr.create_repository(repositoryName="claims")["repository"]["repositoryUri"]
    ecr.put_image(repositoryName="claims", imageManifest=MANIFEST, imageTag="0123456789ab")
    assert pushed_image_uri(ecr, repo_uri, f"{repo_uri}:0123456789ab") == f"{repo_uri}:0123456789ab"
    assert pushed_image_uri(ecr, repo_uri, f"{repo_uri}:never-pushed") is None
    assert pushed_image_uri(ecr, repo_uri, f"{REGISTRY}/elsewhere:0123456789ab") is None
    assert pushed_image_uri(ecr, repo_uri, None) is None

    outputs = {key: "x" for key in ("Region", "ExecutionRoleArn", "DataBucket", "ConfigBucket")}
    outputs |= {"S3Prefix": "p", "EcrRepositoryName": "claims", "EcrRepositoryUri": repo_uri}
    outputs |= {"ModelPackageGroupName": "g", "KmsKeyArn": "k", "SchedulerRoleArn": "s"}
    outputs |= {"PipelineName": "n"}
    path = tmp_path / "stack.yaml"
    assert "image_uri" not in write_config(outputs, path, "stack", "us-east-1")["sagemaker"]
    record_image_uri(path, f"{repo_uri}:0123456789ab")
    values = read_record(path)
    assert values["sagemaker"]["image_uri"] == f"{repo_uri}:0123456789ab"
    assert values["sagemaker"]["bucket"] == "x"  # the stack's values are kept
