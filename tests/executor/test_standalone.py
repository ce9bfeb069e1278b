"""The executor stands alone: its tests pass in a fresh interpreter where none of the project's
packages can be imported, only ``executor`` (a link to the package) and the libraries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import executor

PROJECT = ("steps", "conf", "pipelines", "container", "infra")
# Set for the tests run alone (test_sdk_definitions.py leaves the SDK's build to `make test`).
STANDALONE = "EXECUTOR_TESTS_STANDALONE"
SETTINGS = """[pytest]
addopts = -ra --strict-markers --import-mode=importlib -p no:cacheprovider
markers = slow: end-to-end runs that take more than a few seconds
filterwarnings = ignore::DeprecationWarning
"""
# Runs the tests with the project's root off sys.path (an editable install puts it there)
# and fails first if a project package could still be imported.
BOOTSTRAP = """
import importlib.util, os, sys
root, project = sys.argv[1], sys.argv[2]
sys.path[:] = [root] + [p for p in sys.path if p and os.path.realpath(p) != project]
found = [name for name in {names!r} if importlib.util.find_spec(name) is not None]
if found:
    sys.exit(f"importable here, but must not be: {{found}}")
import pytest
sys.exit(pytest.main(["-n", "0", "-q", "--basetemp", os.path.join(root, "tmp"), "tests"]))
"""


@pytest.mark.slow
def test_the_executor_tests_pass_without_the_project() -> None:
    # A short folder: the warm image tests' socket paths must stay within 108 characters.
    with tempfile.TemporaryDirectory(prefix="executor-") as folder:
        run_alone(Path(folder))


def run_alone(root: Path) -> None:
    package = Path(executor.__file__).resolve().parent
    here = Path(__file__).resolve().parent
    tests = root / "tests"
    tests.mkdir(parents=True)
    (root / "executor").symlink_to(package, target_is_directory=True)
    modules = [p for p in sorted(here.glob("*.py")) if p.name != Path(__file__).name]
    for path in modules:
        shutil.copy(path, tests / path.name)
    shutil.copytree(here / "sdk", tests / "sdk")  # the SDK-built definitions
    (root / "pytest.ini").write_text(SETTINGS)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(root)  # for the subprocesses the tests start (warm servers, jobs)
    env[STANDALONE] = "1"
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            BOOTSTRAP.format(names=PROJECT),
            str(root),
            os.path.realpath(package.parent),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "test_api.py" in {p.name for p in modules} and " passed" in out
