"""Serving benchmark: the model server over HTTP against the model's ``predict`` in-process.

- single-row latency (p50, p99) of ``POST /invocations`` with one CSV row,
  against ``predict`` on a one-row frame;
- rows per second for a 100,000-row batch sent as CSV and as Parquet (as JSON
  records the same batch is over batch transform's default 6 MB payload),
  against ``predict`` on the same 100,000 rows.

The server is ``python -m container.entrypoint serve`` on an /opt/ml tree with
the default hgb_poisson model, two workers, on 127.0.0.1; ``predict`` in-process
runs with the native threads one worker gets.
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BATCH_ROWS = 100_000
SINGLE_REQUESTS = 300
BATCH_REPEATS = 3
TRAIN_ROWS = "data.n_rows=200000"
WORKERS = 2


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _post(port: int, body: bytes, content_type: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", "/invocations", body, {"Content-Type": content_type})
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {payload[:200]!r}")
        return payload
    finally:
        conn.close()


def _wait_ready(port: int, process: subprocess.Popen[bytes], seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the server did not answer /ping")


def serving(tmp: Path) -> dict[str, Any]:
    """Train the default model, serve it, and time both paths."""
    from threadpoolctl import threadpool_limits

    from conf import compose, to_yaml
    from container.serve import cpu_count
    from steps.prepare import prepare
    from steps.score import load_scorer
    from steps.sources.simulate import generate
    from steps.train import train

    cfg = compose([TRAIN_ROWS])
    splits = prepare(cfg, tmp / "serve-data")
    root = tmp / "opt-ml"
    train(cfg, splits["train"], splits["validation"], root / "model")
    (root / "model" / "config.yaml").write_text(to_yaml(cfg))
    scorer = load_scorer(root / "model")
    batch = generate(BATCH_ROWS, 1)[[*scorer.features, scorer.exposure]]
    bodies = {"text/csv": batch.to_csv(index=False).encode()}
    buffer = io.BytesIO()
    batch.to_parquet(buffer, index=False)
    bodies["application/x-parquet"] = buffer.getvalue()
    json_mb = len(batch.to_json(orient="records").encode()) / 1e6
    one_row = batch.head(1)
    one_csv = one_row.to_csv(index=False).encode()

    # In-process with the native threads one server worker gets (the CPUs shared out).
    threads = max(1, cpu_count() // WORKERS)
    single_local = []
    with threadpool_limits(limits=threads):
        for _ in range(SINGLE_REQUESTS):
            start = time.perf_counter()
            scorer.model.predict(one_row)
            single_local.append(time.perf_counter() - start)
        start = time.perf_counter()
        scorer.model.predict(batch)
        batch_local = time.perf_counter() - start

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OPT_ML_ROOT": str(root)}
    command = [sys.executable, "-m", "container.entrypoint", "serve", "--host=127.0.0.1"]
    command += [f"--port={port}", f"--workers={WORKERS}"]
    with (tmp / "server.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        _wait_ready(port, process)
        _post(port, one_csv, "text/csv")  # warm up
        single_http = []
        for _ in range(SINGLE_REQUESTS):
            start = time.perf_counter()
            _post(port, one_csv, "text/csv")
            single_http.append(time.perf_counter() - start)
        batch_http: dict[str, float] = {}
        for kind, body in bodies.items():
            times = []
            for _ in range(BATCH_REPEATS):
                start = time.perf_counter()
                _post(port, body, kind)
                times.append(time.perf_counter() - start)
            batch_http[kind] = statistics.median(times)
    finally:
        process.terminate()
        process.wait(timeout=60)
    return {
        "single_row_ms": {
            "http_p50": _percentile(single_http, 0.5) * 1000,
            "http_p99": _percentile(single_http, 0.99) * 1000,
            "predict_p50": _percentile(single_local, 0.5) * 1000,
            "predict_p99": _percentile(single_local, 0.99) * 1000,
        },
        "batch_rows_per_s": {
            "csv_http": BATCH_ROWS / batch_http["text/csv"],
            "parquet_http": BATCH_ROWS / batch_http["application/x-parquet"],
            "predict": BATCH_ROWS / batch_local,
        },
        "batch_mb": {
            "csv": len(bodies["text/csv"]) / 1e6,
            "parquet": len(bodies["application/x-parquet"]) / 1e6,
            "json": json_mb,
        },
    }


def serving_report(results: dict[str, Any] | None) -> list[str]:
    """The serving section of the ``make bench`` report."""
    if not results:
        return []
    single, batch, size = results["single_row_ms"], results["batch_rows_per_s"], results["batch_mb"]
    return [
        f"Model server ({WORKERS} workers) vs predict in-process (a worker's threads)",
        f"  single row   HTTP p50 {single['http_p50']:7.1f} ms  p99 {single['http_p99']:7.1f} ms",
        f"               predict p50 {single['predict_p50']:4.1f} ms  "
        f"p99 {single['predict_p99']:7.1f} ms",
        f"  {BATCH_ROWS:,} rows  CSV ({size['csv']:.1f} MB)      "
        f"{batch['csv_http']:9.0f} rows/s over HTTP",
        f"               Parquet ({size['parquet']:.1f} MB)  "
        f"{batch['parquet_http']:9.0f} rows/s over HTTP",
        f"               predict             {batch['predict']:9.0f} rows/s "
        f"(JSON records would be {size['json']:.1f} MB)",
    ]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        print("\n".join(serving_report(serving(Path(folder)))))
