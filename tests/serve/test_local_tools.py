"""serve-local's model resolution and tree, score-local, and the server's settings (in-process)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from conf.contract import MODEL_FILE
from conf.errors import DataError
from container import serve
from pipelines.local import score as score_local
from pipelines.local import serve as serve_local
from steps.score import Scorer
from tests.serve.support import Trained, free_port, start_server, stop


def make_runs(trained: Trained, root: Path) -> Path:
    """outputs/runs with an older finished run, the newest finished one, and a newer failed one."""
    runs = root / "runs"
    for name in ("2026-01-01_00-00-00_000001", "2026-01-02_00-00-00_000001"):
        shutil.copytree(trained.run, runs / name)
    failed = runs / "2026-01-03_00-00-00_000001"
    (failed / "model").mkdir(parents=True)
    return runs


def test_newest_successful_run_and_named_sources(trained: Trained, tmp_path: Path) -> None:
    runs = make_runs(trained, tmp_path)
    assert serve_local.resolve(None, runs=runs) == runs / "2026-01-02_00-00-00_000001" / "model"
    older = runs / "2026-01-01_00-00-00_000001"
    assert serve_local.resolve(str(older), runs=runs) == older / "model"

    archive = tmp_path / "job" / "output" / "model.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for name in (MODEL_FILE, "config.yaml"):
            tar.add(trained.model_dir / name, arcname=name)
    assert serve_local.resolve(str(archive)) == archive

    # A local pipeline execution: its record names the model it registered.
    pipelines = tmp_path / "pipelines"
    stored = pipelines / "s3" / "bucket" / "runs" / "abc123" / "model.tar.gz"
    stored.parent.mkdir(parents=True)
    shutil.copy(archive, stored)
    (pipelines / "abc123").mkdir()
    record = {
        "PipelineExecutionStatus": "Succeeded",
        "Local": {
            "Steps": {
                "Register": {
                    "Request": {
                        "InferenceSpecification": {
                            "Containers": [{"ModelDataUrl": "s3://bucket/runs/abc123/model.tar.gz"}]
                        }
                    }
                }
            }
        },
    }
    (pipelines / "abc123" / "execution.json").write_text(json.dumps(record))
    assert serve_local.resolve("abc123", pipelines=pipelines) == stored
    with serve_local.model_tree(stored) as root:
        assert sorted(p.name for p in (root / "model").iterdir()) == [
            "config.yaml",
            MODEL_FILE,
        ]

    with pytest.raises(DataError, match="No successful local run"):
        serve_local.resolve(None, runs=tmp_path / "none")
    with pytest.raises(DataError, match="is not a local run folder"):
        serve_local.resolve(str(tmp_path / "missing"))


def test_score_local_writes_a_new_folder_each_time(
    trained: Trained, scorer: Scorer, tmp_path: Path
) -> None:
    policies = trained.test.drop(columns=["ClaimNb"]).head(50)
    source = tmp_path / "policies.csv"
    policies.to_csv(source, index=False)
    run = str(trained.run)
    scores = tmp_path / "scores"
    first = score_local.score_file(source, run, scores=scores)
    second = score_local.score_file(source, run, scores=scores)
    assert first.parent != second.parent and first.read_bytes() == second.read_bytes()
    result = pd.read_csv(first)
    assert list(result.columns) == [*policies.columns, "frequency", "expected_claims"]
    expected = scorer.model.predict(policies)
    pd.testing.assert_series_equal(
        result["frequency"], pd.Series(expected, name="frequency"), rtol=1e-12
    )
    summary = json.loads((first.parent / "score.json").read_text())
    assert summary["rows"] == 50

    parquet = tmp_path / "policies.parquet"
    policies.to_parquet(parquet)
    out = score_local.score_file(parquet, run, out=tmp_path / "mine")
    assert out == tmp_path / "mine" / "predictions.parquet"
    with pytest.raises(DataError, match="not empty"):
        score_local.score_file(parquet, run, out=tmp_path / "mine")


def test_score_local_bad_input_exit_2(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    trained.test.drop(columns=["DrivAge"]).head(5).to_csv(bad, index=False)
    assert score_local.main([str(bad), "--model", str(trained.run)]) == 2
    err = capsys.readouterr().err
    assert "Missing feature column 'DrivAge'" in err and "Traceback" not in err
    assert score_local.main([str(tmp_path / "x.txt"), "--model", str(trained.run)]) == 2


def test_server_settings_from_sagemaker_environment(tmp_path: Path) -> None:
    env = {
        "SAGEMAKER_BIND_TO_PORT": "9001",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "12",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0",
    }
    got = serve.settings([], env)
    assert (got.port, got.workers, got.timeout, got.max_payload_bytes) == (9001, 3, 12, None)
    assert serve.settings(["--port", "9002"], env).port == 9002
    default = serve.settings([], {})
    assert (default.port, default.timeout, default.max_payload_mb) == (8080, 60, 6)
    with pytest.raises(serve.ServeError, match="SAGEMAKER_MODEL_SERVER_WORKERS='many'"):
        serve.settings([], {"SAGEMAKER_MODEL_SERVER_WORKERS": "many"})


def test_gunicorn_runs_gevent_workers_with_a_heartbeat_past_the_request_timeout() -> None:
    port = free_port()
    config = serve.settings(["--host", "127.0.0.1", "--port", str(port), "--timeout", "12"], {})
    options = serve.gunicorn_options(config)
    assert options["bind"] == f"127.0.0.1:{port}"
    assert options["timeout"] == 12 + serve.HEARTBEAT_MARGIN
    assert options["keepalive"] == serve.KEEPALIVE
    assert options["worker_class"].__mro__[1].__name__ == "GeventWorker"


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        (["--workers", "100000"], {}, "--workers=100000 is more workers than this machine"),
        ([], {"SAGEMAKER_MODEL_SERVER_WORKERS": "100000"}, "SAGEMAKER_MODEL_SERVER_WORKERS=100000"),
        (["--workers", "0"], {}, "--workers='0' must be a whole number >= 1"),
        (["--port", "70000"], {}, "--port='70000' must be a whole number from 1 to 65535"),
        ([], {"SAGEMAKER_BIND_TO_PORT": "0"}, "from 1 to 65535"),
        (["--timeout", "-5"], {}, "--timeout='-5'"),
    ],
)
def test_server_settings_out_of_range_are_refused(
    argv: list[str], env: dict[str, str], words: str
) -> None:
    with pytest.raises(serve.ServeError) as err:
        serve.settings(argv, env)
    assert words in str(err.value)


def test_the_worker_cap_follows_the_cpus() -> None:
    cap = serve.WORKERS_PER_CPU * serve.cpu_count()
    assert serve.settings(["--workers", str(cap)], {}).workers == cap
    with pytest.raises(serve.ServeError, match=f"at most {cap}"):
        serve.settings(["--workers", str(cap + 1)], {})


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another server listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_serve_start_errors_are_one_line_exit_2(trained: Trained, busy_port: int) -> None:
    """Refused before the model loads and before gunicorn (which retried, then exited 1)."""
    cases = [
        (["--workers", "100000"], "more workers than this machine can use"),
        (["--port", "70000"], "from 1 to 65535"),
        (
            ["--host", "127.0.0.1", "--port", str(busy_port)],
            f"Port {busy_port} on 127.0.0.1 is in use",
        ),
        (["--host", "192.0.2.1", "--port", str(free_port())], "is not an address of this machine"),
    ]
    for argv, words in cases:
        command = [sys.executable, "-m", "container.entrypoint", "serve", *argv]
        command += ["--model-dir", str(trained.model_dir)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (argv, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
        assert "Booting worker" not in done.stdout + done.stderr


def test_server_without_a_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve.main(["--model-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No trained model at") and "Traceback" not in err


def test_serve_local_serves_a_run_and_stops_with_it(trained: Trained, tmp_path: Path) -> None:
    """``make serve-local --model <run>``: curl-able, and its server ends with it."""
    port = free_port()
    command = [sys.executable, "-m", "pipelines.local.serve", "--model", str(trained.run)]
    command += ["--port", str(port), "--workers", "1"]
    server = start_server(command, dict(os.environ), tmp_path / "serve-local.log", port)
    try:
        body = trained.test.head(3).to_csv(index=False).encode()
        request = urllib.request.Request(
            f"{server.url}/invocations", data=body, headers={"Content-Type": "text/csv"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert len(response.read().decode().splitlines()) == 3
    finally:
        stop(server)
    master = re.search(r"Listening at: \S+ \((\d+)\)", server.log_text())
    assert master, server.log_text()
    assert server.process.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(int(master.group(1)), 0)
