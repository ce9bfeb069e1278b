"""Fixtures for the infra tests: the template, a deployed stack, the config tree, an engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest

import conf
from infra.cli import deploy_stack
from infra.template import load_template
from tests.infra.standin_engine import write_tool
from tests.infra.support import STACK_NAME, strip_for_moto


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """The full template as plain data."""
    return load_template()


@pytest.fixture
def moto_template(template: dict[str, Any], tmp_path: Path) -> Path:
    """The template moto can deploy, written as JSON."""
    stripped, _ = strip_for_moto(template)
    path = tmp_path / "template.json"
    path.write_text(json.dumps(stripped, indent=1))
    return path


@pytest.fixture
def deployed(aws: str, moto_template: Path) -> dict[str, str]:
    """Outputs of the stack deployed to the local endpoint."""
    cfn = boto3.client("cloudformation")
    return deploy_stack(cfn, STACK_NAME, moto_template, poll_seconds=0.05, log=lambda _: None)


@pytest.fixture
def conf_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the config tree (without any stack.yaml) that ``conf.compose`` reads."""
    target = tmp_path / "conf"
    shutil.copytree(
        conf.CONF_DIR, target, ignore=shutil.ignore_patterns("stack.yaml", "__pycache__")
    )
    monkeypatch.setattr(conf, "CONF_DIR", target)
    return target


@pytest.fixture
def fake_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CONTAINER_TOOL set to the recording stand-in (``standin_engine``); returns its log."""
    log = tmp_path / "tool.log"
    monkeypatch.setenv("CONTAINER_TOOL", str(write_tool(tmp_path / "fake-docker", log)))
    return log
