"""The executor stands alone: it imports nothing of the project, only the standard library and
botocore (boto3 and optuna lazily, where used); its container command lines and S3 endpoint."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from executor import images, jobs
from executor.storage import FolderStore, S3Endpoint

PACKAGE = Path(jobs.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


PROJECT = ("steps", "container", "conf", "pipelines", "infra", "hydra_plugins")
# Beside the standard library, what the executor may import; the optional ones only lazily.
LIBRARIES = ("botocore",)
OPTIONAL = ("boto3", "optuna")


def module_level_imports(path: Path) -> set[str]:
    """Top-level names imported when the module loads (not inside a function)."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in tree.body:
        # ``if TYPE_CHECKING:`` and ``if __package__:`` blocks run when the module loads, too.
        body = node.body if isinstance(node, ast.If) else [node]
        for item in body:
            if isinstance(item, ast.Import):
                out |= {alias.name.split(".")[0] for alias in item.names}
            elif isinstance(item, ast.ImportFrom) and item.module and not item.level:
                out.add(item.module.split(".")[0])
    return out


def test_no_module_imports_steps_or_container() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 10
    for path in modules:
        names = imported_modules(path)
        bad = {n for n in names if n.split(".")[0] in PROJECT}
        assert not bad, f"{path.name} imports {bad}"


def test_only_the_standard_library_and_botocore_load_with_the_executor() -> None:
    allowed = set(sys.stdlib_module_names) | {"executor", "__future__", *LIBRARIES}
    for path in sorted(PACKAGE.glob("*.py")):
        everywhere = {n.split(".")[0] for n in imported_modules(path)}
        assert everywhere <= allowed | set(OPTIONAL), f"{path.name}: {everywhere - allowed}"
        eager = module_level_imports(path)
        assert eager <= allowed, f"{path.name} imports {eager - allowed} when it loads"


def test_running_a_definition_loads_no_project_code(tmp_path: Path) -> None:
    """In a fresh interpreter: run a hand-written definition, then look at sys.modules."""
    script = f"""
import sys, json
sys.path.insert(0, {str(Path(__file__).parent)!r})
import support
from pathlib import Path
e = support.execution(Path({str(tmp_path)!r}))
assert e.run() == "Succeeded", e.record.data
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {PROJECT!r})
print(json.dumps(loaded))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(jobs.__file__).parent.parent)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_container_engine_command_lines(tmp_path: Path) -> None:
    engine = images.ContainerEngine("podman", ("--runtime", "runc"))
    cmd = engine.command(
        "job-1",
        "claim-frequency:abc",
        tmp_path,
        ["/opt/ml/processing/input/config", "/opt/ml/processing/output/train"],
        ["python", "-m", "container.entrypoint", "prepare"],
        ["--overrides=none"],
        {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:5000"},
    )
    assert cmd[:8] == ["podman", "run", "--rm", "--name", "job-1", "--network", "host", "--runtime"]
    assert ["-v", f"{tmp_path}:/opt/ml"] == cmd[9:11]
    assert f"{tmp_path}/processing/input/config:/opt/ml/processing/input/config" in cmd
    assert f"{tmp_path}/processing/output/train:/opt/ml/processing/output/train" in cmd
    assert "AWS_ENDPOINT_URL_S3=http://127.0.0.1:5000" in cmd
    i = cmd.index("--entrypoint")
    assert cmd[i:] == [
        "--entrypoint",
        "python",
        "claim-frequency:abc",
        "-m",
        "container.entrypoint",
        "prepare",
        "--overrides=none",
    ]
    # A training job without ContainerEntrypoint: the image's own ENTRYPOINT gets `train`.
    train = images.ContainerEngine("docker").command(
        "job-2", "img", tmp_path, ["/opt/ml/model"], None, ["train"], {}
    )
    assert train[-2:] == ["img", "train"] and "--entrypoint" not in train
    assert engine.stop_command("job-1") == ["podman", "kill", "job-1"]
    with pytest.raises(Exception, match="choose one of"):
        images.ContainerEngine("lxc")


def test_container_mounts_are_absolute_and_env_files_are_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Engines refuse relative host paths (they read them as volume names)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tree").mkdir()
    config = tmp_path / "aws-config"
    config.write_text("[default]\n")
    cmd = images.ContainerEngine("podman").command(
        "job-3",
        "img",
        Path("tree"),
        ["/opt/ml/processing/input/config"],
        None,
        [],
        {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"},
    )
    mounts = [cmd[i + 1] for i, item in enumerate(cmd) if item == "-v"]
    assert all(m.startswith("/") for m in mounts), mounts
    assert f"{tmp_path}/tree:/opt/ml" in mounts
    assert f"{config}:{config}:ro" in mounts and not any("/dev/null" in m for m in mounts)


def test_local_image_mapping_and_entrypoint_override() -> None:
    mapping = images.LocalImages(
        {"img": images.LocalImage(("python", "-m", "pkg.main"))}, interpreter="/env/python"
    )
    assert mapping.command("img", None, ["train"])[0] == ["/env/python", "-m", "pkg.main", "train"]
    assert mapping.command("img", ["python3", "x.py"], ["a"])[0] == ["/env/python", "x.py", "a"]
    with pytest.raises(Exception, match="has no local command"):
        mapping.command("other", None, [])


def test_s3_endpoint_serves_the_folder_store_to_boto3(tmp_path: Path) -> None:
    store = FolderStore(tmp_path)
    store.write("s3://data-bucket/in/a.csv", b"x,y\n1,2\n")
    store.write("s3://data-bucket/in/b/c.csv", b"z" * 100_000)
    with S3Endpoint(store) as endpoint:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint.url,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        listed = s3.list_objects_v2(Bucket="data-bucket", Prefix="in/")
        assert [o["Key"] for o in listed["Contents"]] == ["in/a.csv", "in/b/c.csv"]
        s3.download_file("data-bucket", "in/b/c.csv", str(tmp_path / "c.csv"))
        assert (tmp_path / "c.csv").read_bytes() == b"z" * 100_000
        assert s3.head_object(Bucket="data-bucket", Key="in/a.csv")["ContentLength"] == 8
        with pytest.raises(s3.exceptions.ClientError, match=r"404|NoSuchKey"):
            s3.get_object(Bucket="data-bucket", Key="missing")
        with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
            s3.put_object(Bucket="data-bucket", Key="new", Body=b"1")
