"""serve-local's model resolution and tree, score-local, and the server's settings (in-process)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
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


# -------------------------------------------------------- the model, named as given


def execution(pipelines: Path, text: str) -> Path:
    folder = pipelines / "exec1"
    folder.mkdir(parents=True)
    (folder / "execution.json").write_text(text)
    return folder


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"PipelineExecutionStatus": "Succ', "truncated or not JSON"),
        ("", "truncated or not JSON"),
        ("[1, 2]", "is not a JSON object"),
        ('{"Steps": {"ModelDataUrl": "s3://b/../../../etc/model.tar.gz"}}', "outside the local"),
    ],
)
def test_a_broken_execution_record_is_a_user_error_naming_it(
    trained: Trained,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    words: str,
) -> None:
    folder = execution(tmp_path / "pipelines", text)
    policies = tmp_path / "policies.csv"
    trained.test.head(3).to_csv(policies, index=False)
    for tool in (serve_local.main, lambda argv: score_local.main([str(policies), *argv])):
        assert tool(["--model", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert words in err
        if "JSON" in words:
            assert str(folder / "execution.json") in err


def test_a_legacy_model_gets_the_retrain_message(trained: Trained, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "model.joblib").write_bytes(b"pickled")
    (run / "metrics.json").write_text("{}\n")
    for spec in (run, run / "model"):
        with pytest.raises(DataError, match=r"saved by an earlier version.*Retrain") as err:
            serve_local.resolve(str(spec))
        assert str(run / "model" / "model.joblib") in str(err.value)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(run / "model" / "model.joblib", arcname="model.joblib")
    source = serve_local.resolve(str(archive))
    with pytest.raises(DataError, match="Retrain") as err, serve_local.model_tree(source):
        pass
    assert str(archive) in str(err.value)


def test_a_model_that_fails_to_load_is_named_as_given(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    (run / "model" / MODEL_FILE).write_bytes(b"not a model")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(run / "model" / MODEL_FILE, arcname=MODEL_FILE)
    policies = tmp_path / "policies.csv"
    trained.test.head(3).to_csv(policies, index=False)
    for spec, named in ((run, f"'{run / 'model' / MODEL_FILE}'"), (archive, f"'{archive}'")):
        assert score_local.main([str(policies), "--model", str(spec)]) == 2
        assert serve_local.main(["--model", str(spec), "--port", str(free_port())]) == 2
        for err in capsys.readouterr().err.strip().splitlines():
            assert "Cannot read the model file" in err and named in err, err
            assert "opt-ml-" not in err, err


# ------------------------------------------------------------ score-local's outputs


@pytest.fixture(scope="module")
def policies_csv(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("input") / "policies.csv"
    trained.test.drop(columns=["ClaimNb"]).head(2000).to_csv(path, index=False)
    return path


def score_local_command(policies: Path, trained: Trained, out: Path) -> list[str]:
    command = [sys.executable, "-m", "pipelines.local.score", str(policies)]
    return [*command, "--model", str(trained.run), "--out", str(out)]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_score_local_output_that_is_a_file_is_named(
    trained: Trained, policies_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("mine\n")
    for out, words in ((taken, f"'{taken}' is a file"), (taken / "sub", f"'{taken}' is a file")):
        assert (
            score_local.main([str(policies_csv), "--model", str(trained.run), "--out", str(out)])
            == 2
        )
        assert words in one_error_line(capsys.readouterr().err)
    assert taken.read_text() == "mine\n"


def in_mount_namespace(mounts: list[str], command: list[str]) -> subprocess.CompletedProcess[str]:
    """``command`` in a new mount namespace with ``mounts`` (``mount`` arguments) made first."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespaces here: {probe.stderr.decode().strip()}")
    script = " && ".join(f"mount {m}" for m in mounts) + ' && exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", *command],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ("-o ro,size=1m", "Read-only file system"),
        ("-o size=64k", "the disk is full"),  # the predictions (about 300 KB) do not fit
    ],
)
def test_score_local_unwritable_output_is_named(
    trained: Trained, policies_csv: Path, tmp_path: Path, options: str, words: str
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "scores"
    done = in_mount_namespace(
        [f"-t tmpfs {options} tmpfs {disk}"], score_local_command(policies_csv, trained, out)
    )
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)
    assert f"Cannot write the scores to '{out}'" in line and words in line, line
    assert not out.exists()  # the mount is gone with its namespace; nothing was written here


def wait_for_staging(out: Path, process: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether a staging folder appeared in ``out`` while ``process`` ran."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if out.is_dir() and any(p.name.startswith(".staging-") for p in out.iterdir()):
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_score_local_interrupted_while_writing_leaves_nothing(
    trained: Trained, tmp_path: Path, signum: int, code: int
) -> None:
    """The signal lands while predictions are written: no staging folder, one line."""
    big = tmp_path / "big.csv"
    policies = trained.test.drop(columns=["ClaimNb"])
    pd.concat([policies] * (150_000 // len(policies) + 1)).head(150_000).to_csv(big, index=False)
    out = tmp_path / "scores"
    command = score_local_command(big, trained, out)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        staged = wait_for_staging(out, process, seconds=240)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert staged, "no staging folder appeared"
    text = stderr.decode()
    assert process.returncode == code, text
    assert text.strip().splitlines()[-1] == "interrupted" and "Traceback" not in text, text
    assert not out.exists() or not list(out.iterdir()), list(out.iterdir())
    # The same --out takes the scores afterwards.
    small = tmp_path / "small.csv"
    policies.head(20).to_csv(small, index=False)
    assert score_local.score_file(small, str(trained.run), out=out) == out / "predictions.csv"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_score_local_interrupted_early_ends_with_one_line(
    trained: Trained, policies_csv: Path, tmp_path: Path, signum: int, code: int
) -> None:
    """While modules load or the model is read: exit 128 + the signal, ``interrupted``."""
    if not Path("/proc/self/maps").is_file():
        pytest.skip("needs /proc")
    out = tmp_path / "scores"
    process = subprocess.Popen(
        score_local_command(policies_csv, trained, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Once pandas' libraries are mapped, the command is past its first imports.
    deadline = time.monotonic() + 120
    maps = Path(f"/proc/{process.pid}/maps")
    while process.poll() is None and time.monotonic() < deadline:
        if "pandas" in maps.read_text(errors="replace"):
            break
        time.sleep(0.01)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    text = stderr.decode()
    assert process.returncode == code, text
    assert text.strip() == "interrupted", text
    assert not out.exists()


def test_body_budget_makes_requests_wait_then_refuses_them() -> None:
    """A worker's bodies past the budget wait for others; past their time, 503."""
    import gevent

    from steps.score import RequestError

    budget = serve.BodyBudget(100)
    order: list[str] = []

    def holder(name: str, size: int, hold: float) -> None:
        budget.take(size, time.monotonic() + 5)
        order.append(f"{name} took")
        gevent.sleep(hold)
        budget.release()
        order.append(f"{name} gave")

    def waiter(name: str, size: int, seconds: float) -> str:
        try:
            budget.take(size, time.monotonic() + seconds)
        except RequestError as err:
            return f"{err.status} {err}"
        order.append(f"{name} took")
        budget.release()
        return "ok"

    first = gevent.spawn(holder, "a", 80, 0.3)
    gevent.sleep(0)
    patient, hasty = gevent.spawn(waiter, "b", 40, 5), gevent.spawn(waiter, "c", 40, 0.05)
    gevent.joinall([first, patient, hasty], timeout=10)
    assert patient.value == "ok" and order.index("b took") > order.index("a gave"), order
    assert hasty.value.startswith("503 ") and "retry" in hasty.value, hasty.value
    assert budget.used == 0 and not any(budget.taken.values())
    unbounded = serve.BodyBudget(None)
    unbounded.take(10**12, time.monotonic())
    unbounded.release()
    assert unbounded.used == 0
