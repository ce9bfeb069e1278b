"""Shared fixtures: a real local AWS endpoint and small composed configs."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps import register_schemas

# No test may reach a public AWS host: unless a test starts the local endpoint,
# every AWS call goes to a closed local port and fails fast.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAGEMAKER_VALIDATE_ROLE": "false",
    }
)

# What every entrypoint does before it composes a config.
register_schemas()


# The end-to-end suites: they start processes (runs, jobs, servers), build SageMaker
# definitions with the SDK or train on real data sizes. `make test-fast` leaves out
# every test marked slow; `make test` (and CI) runs them all.
SLOW_SUITES = (
    "local/",
    "container/test_container_entrypoint.py",
    "container/test_container_first_execution.py",
    "pipelines/",
    "sagemaker/",
    "serve/",
    "steps/test_steps.py",
    "steps/test_bad_input_steps.py",
    "infra/test_template.py",
    "infra/test_config.py",
    "infra/test_deploy.py",
    "infra/test_image.py",
    "executor/test_aws_mode.py",
    "executor/test_tiny_pipeline.py",
    "executor/test_tuning.py",
    "executor/test_warm.py",
)
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of the end-to-end suites ``slow``."""
    for item in items:
        where = item.path.relative_to(TESTS).as_posix()
        if where.startswith(SLOW_SUITES):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 at a free port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point boto3 (and subprocesses) at a freshly reset local endpoint."""
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    yield moto_endpoint
