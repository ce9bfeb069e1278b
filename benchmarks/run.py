"""``make bench``: cost of the project measured against a plain baseline, side by side.

Prints, from one run:
- wall and CPU time of ``make local-run`` on the default data against a plain
  scikit-learn script doing the same load, fit, predict and plot: at least 7
  pairs of runs, alternating so both see the same machine load, compared by
  their medians; the wall-time ratio must be <= 1.3 (the CPU-time ratio, beside
  it, is steadier on a busy machine). Both sides run in the environment `make`
  installs, with precompiled bytecode, so neither pays for compiling library source;
- D^2(model) / D^2(true frequency) on the synthetic test set for hgb_poisson
  and glm_poisson (the default model should reach 0.9);
- wall time and peak memory of a local run at 1x and 10x the default rows;
- ``make pipeline-definition`` against importing the SageMaker SDK alone;
- the model server: single-row latency and 100,000-row batch throughput over
  HTTP against ``predict`` in-process (``benchmarks/serving.py``);
- ``make local-pipeline`` (train variant, default data) against ``make local-run``
  on the same data, with where its time goes (target ratio: at most 2).
Results are also saved as JSON under ``bench-results/``. ``--only baseline`` measures
the first comparison alone (``make bench ARGS="--only baseline"``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.serving import serving, serving_report

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROWS = 678_013
MAX_RATIO = 1.3
MIN_D2_RATIO = 0.9
# Fewer pairs of alternating runs give a median that one slow run can move.
MIN_PAIRS = 7
PARTS = ("definition", "baseline", "d2", "scaling", "image", "serving", "pipeline")


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall time and peak RSS of one command, measured in a separate process."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.measure", *cmd],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{out.stderr}")
    return json.loads(out.stdout)


def local_run(tmp: Path, tag: str, *overrides: str) -> list[str]:
    run_dir = tmp / tag
    return [sys.executable, "-m", "pipelines.local.run", f"hydra.run.dir={run_dir}", *overrides]


def make_local_run(tmp: Path, tag: str) -> list[str]:
    return ["make", "--no-print-directory", "local-run", f"ARGS=hydra.run.dir={tmp / tag}"]


def bytecode_precompiled() -> bool:
    """Whether the environment holds compiled bytecode for scikit-learn (``make`` installs it)."""
    cache = Path(sysconfig.get_paths()["purelib"]) / "sklearn" / "__pycache__"
    return any(cache.glob("__init__.*.pyc"))


def versus_baseline(tmp: Path, pairs: int) -> dict[str, Any]:
    """Alternate ``make local-run`` and the baseline script; compare median wall and CPU times."""
    if not bytecode_precompiled():
        raise SystemExit("benchmark needs precompiled bytecode: run it with `make bench`.")
    ours, base = [], []
    for i in range(pairs):
        ours.append(measure(make_local_run(tmp, f"ours-{i}")))
        (tmp / f"base-{i}").mkdir()
        script = [sys.executable, "-m", "benchmarks.baseline_sklearn", str(tmp / f"base-{i}")]
        base.append(measure(script))
    times = {
        "make_local_run_s": [r["wall_s"] for r in ours],
        "baseline_s": [r["wall_s"] for r in base],
        "make_local_run_cpu_s": [r["cpu_s"] for r in ours],
        "baseline_cpu_s": [r["cpu_s"] for r in base],
    }
    median = {key: statistics.median(values) for key, values in times.items()}
    return {
        **times,
        "pairs": pairs,
        "ratio": median["make_local_run_s"] / median["baseline_s"],
        "cpu_ratio": median["make_local_run_cpu_s"] / median["baseline_cpu_s"],
    }


def d2_ratios(tmp: Path) -> dict[str, float]:
    """D^2 of each model relative to the true frequency's D^2, on the default data."""
    out = {}
    for model in ("hgb_poisson", "glm_poisson"):
        measure(local_run(tmp, f"d2-{model}", f"model={model}"))
        metrics = json.loads((tmp / f"d2-{model}" / "metrics.json").read_text())
        out[model] = metrics["test"]["d2_ratio"]
    return out


def scaling(tmp: Path, factors: list[int]) -> dict[str, dict[str, float]]:
    """Wall time and peak memory of a local run at multiples of the default size."""
    return {
        f"{f}x": measure(local_run(tmp, f"scale-{f}", f"data.n_rows={DEFAULT_ROWS * f}"))
        for f in factors
    }


def pipeline_definition(tmp: Path) -> dict[str, float] | None:
    """``pipelines.sagemaker.cli definition`` against importing the SDK alone."""
    if not (ROOT / "pipelines" / "sagemaker" / "cli.py").is_file():
        return None
    # A region for the SDK's import-time clients; no AWS endpoint is ever called.
    env = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    sdk = measure([sys.executable, "-c", "import sagemaker.mlops.workflow"], env)
    definition = measure(
        [
            sys.executable,
            "-m",
            "pipelines.sagemaker.cli",
            "definition",
            "--out",
            str(tmp / "definition.json"),
            "sagemaker.region=us-east-1",
            "sagemaker.role_arn=arn:aws:iam::111122223333:role/bench",
            "sagemaker.bucket=bench-bucket",
            "sagemaker.image_uri=111122223333.dkr.ecr.us-east-1.amazonaws.com/bench:latest",
        ],
        env,
    )
    return {
        "import_sdk_s": sdk["wall_s"],
        "definition_s": definition["wall_s"],
        "beyond_import_s": definition["wall_s"] - sdk["wall_s"],
    }


MAX_IMAGE_MB = 900


def image_size() -> dict[str, Any] | None:
    """Size of the job image built from this source (``make build-image``), if there is one.

    Also the size of the base it was built on, where that is present locally.
    """
    from infra import image

    try:
        engine = image.detect_engine()
        from conf import compose

        name = f"{compose([]).sagemaker.ecr_repository}:{image.source_tag().tag}"
        labels = image.image_labels(engine, name)
    except image.ImageError as err:
        return {"skipped": str(err)}

    def size(ref: str) -> float | None:
        cmd = engine.cmd("image", "inspect", "--format", "{{.Size}}", ref)
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        return int(out.stdout.strip()) / 1e6 if out.returncode == 0 else None

    base = labels.get(image.BASE_LABEL, "")
    return {
        "image": name,
        "size_mb": size(name),
        "base": base,
        "base_mb": size(base) if base else None,
        "standin_base": image.is_standin(labels),
    }


def baseline_report(vs: dict[str, Any] | None) -> list[str]:
    """The lines comparing ``make local-run`` with the baseline script."""
    if not vs:
        return []
    ok = "ok" if vs["ratio"] <= MAX_RATIO else "TOO SLOW"
    pairs = vs.get("pairs", len(vs["make_local_run_s"]))
    lines = [
        "make local-run vs plain scikit-learn script",
        f"  (medians of {pairs} alternating pairs, both with precompiled bytecode)",
        f"{'':18s}{'wall':>7s}{'':4s}{'CPU':>7s}",
        f"  make local-run  {statistics.median(vs['make_local_run_s']):7.1f} s"
        + _cpu_cell(vs.get("make_local_run_cpu_s")),
        f"  baseline        {statistics.median(vs['baseline_s']):7.1f} s"
        + _cpu_cell(vs.get("baseline_cpu_s")),
        f"  ratio           {vs['ratio']:7.2f}    {vs.get('cpu_ratio', float('nan')):7.2f}"
        f"    (wall target <= {MAX_RATIO}: {ok}; CPU is steadier under load)",
    ]
    return lines


def _cpu_cell(values: list[float] | None) -> str:
    return f"  {statistics.median(values):7.1f} s" if values else ""


def image_report(result: dict[str, Any] | None) -> list[str]:
    """The image-size lines of the report."""
    if not result:
        return []
    if "skipped" in result:
        return ["Job image size", f"  not measured: {result['skipped']}"]
    ok = "ok" if result["size_mb"] <= MAX_IMAGE_MB else "TOO BIG"
    kind = "stand-in base" if result["standin_base"] else "base"
    lines = [
        f"Job image size ({result['image']})",
        f"  image           {result['size_mb']:7.0f} MB  (target <= {MAX_IMAGE_MB}: {ok})",
    ]
    if result["base_mb"]:
        added = result["size_mb"] - result["base_mb"]
        lines.append(f"  {kind:<15s} {result['base_mb']:7.0f} MB  ({result['base']})")
        lines.append(f"  added by build  {added:7.0f} MB")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs",
        type=int,
        default=MIN_PAIRS,
        help=f"alternating pairs of make local-run and the baseline (at least {MIN_PAIRS})",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each side of make local-pipeline (median)"
    )
    parser.add_argument("--scales", default="1,10", help="multiples of the default rows")
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="measure this part only (repeatable)"
    )
    args = parser.parse_args()
    if args.pairs < MIN_PAIRS:
        parser.error(f"--pairs={args.pairs}: at least {MIN_PAIRS}")
    parts = set(args.only or PARTS)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "definition" in parts:
            results["pipeline_definition"] = pipeline_definition(tmp)
        if "baseline" in parts:
            results["local_run_vs_baseline"] = versus_baseline(tmp, args.pairs)
        if "d2" in parts:
            results["d2_ratio"] = d2_ratios(tmp)
        if "scaling" in parts:
            results["scaling"] = scaling(tmp, [int(f) for f in args.scales.split(",")])
        if "image" in parts:
            results["image"] = image_size()
        if "serving" in parts:
            results["serving"] = serving(tmp)
        if "pipeline" in parts:
            results["local_pipeline"] = local_pipeline(tmp, args.repeats)
    print(report(results))
    if "local_pipeline" in results:
        print(local_pipeline_report(results["local_pipeline"]))
    out = ROOT / "bench-results" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Saved {out.relative_to(ROOT)}")


def report(results: dict[str, Any]) -> str:
    """The benchmark results as a short text report (the parts that were measured)."""
    lines = baseline_report(results.get("local_run_vs_baseline"))
    if "d2_ratio" in results:
        lines.append("D^2(model) / D^2(true frequency), synthetic test set")
        for model, value in results["d2_ratio"].items():
            flag = "" if model != "hgb_poisson" else f"   (target >= {MIN_D2_RATIO})"
            lines.append(f"  {model:14s}  {value:7.3f}{flag}")
    if "scaling" in results:
        lines.append("Local run cost by data size")
        for scale, cost in results["scaling"].items():
            wall, peak = cost["wall_s"], cost["peak_mib"]
            lines.append(f"  {scale:>4s} rows      {wall:7.1f} s  {peak:8.0f} MiB")
    pd = results.get("pipeline_definition")
    if pd:
        lines.append("make pipeline-definition")
        lines.append(f"  import SDK only  {pd['import_sdk_s']:6.1f} s")
        lines.append(f"  definition       {pd['definition_s']:6.1f} s")
        lines.append(f"  beyond import    {pd['beyond_import_s']:6.1f} s")
    lines += image_report(results.get("image"))
    lines += serving_report(results.get("serving"))
    return "\n".join(lines)


# ------------------------------------------------------------------- local pipeline

MAX_PIPELINE_RATIO = 2.0


def local_pipeline(tmp: Path, repeats: int) -> dict[str, Any]:
    """``make local-pipeline`` against ``make local-run`` (alternating), and its time split."""
    ours, base = [], []
    outputs = tmp
    for i in range(repeats):
        outputs = tmp / f"local-pipeline-{i}"
        make = ["make", "--no-print-directory", "local-pipeline", f"ARGS=--outputs {outputs}"]
        ours.append(measure(make)["wall_s"])
        base.append(measure(make_local_run(tmp, f"local-run-{i}"))["wall_s"])
    record = json.loads(next(outputs.glob("*/execution.json")).read_text())
    steps = {
        s["StepName"]: _seconds(s["StartTime"], s["EndTime"])
        for s in record["PipelineExecutionSteps"]
        if s.get("EndTime")
    }
    # Inside each job: from the job's start to its first log line (interpreter and imports).
    startup = {}
    for name, step in record["Local"]["Steps"].items():
        log = step.get("Log")
        if log and Path(log).is_file():
            first = next((line for line in Path(log).read_text().splitlines()[1:2]), "")
            stamp = first[:23].replace(",", ".")
            if stamp[:4].isdigit():
                started = datetime.fromisoformat(step_start(record, name)).replace(tzinfo=None)
                startup[name] = (datetime.fromisoformat(stamp) - started).total_seconds()
    return {
        "make_local_pipeline_s": ours,
        "make_local_run_s": base,
        "ratio": statistics.median(ours) / statistics.median(base),
        "steps_s": steps,
        "job_startup_s": startup,
        "outside_steps_s": ours[-1] - sum(steps.values()),
    }


def step_start(record: dict[str, Any], name: str) -> str:
    return next(s["StartTime"] for s in record["PipelineExecutionSteps"] if s["StepName"] == name)


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def local_pipeline_report(lp: dict[str, Any]) -> str:
    ok = "ok" if lp["ratio"] <= MAX_PIPELINE_RATIO else "TOO SLOW"
    lines = [
        "make local-pipeline (train) vs make local-run (median wall time, alternating runs)",
        f"  local-pipeline  {statistics.median(lp['make_local_pipeline_s']):7.1f} s",
        f"  local-run       {statistics.median(lp['make_local_run_s']):7.1f} s",
        f"  ratio           {lp['ratio']:7.2f}   (target <= {MAX_PIPELINE_RATIO}: {ok})",
        "  where the time goes (last run)",
        f"    outside steps (env, SDK import, definition)  {lp['outside_steps_s']:5.1f} s",
    ]
    for name, seconds in lp["steps_s"].items():
        startup = lp["job_startup_s"].get(name)
        extra = f"  (job start to first log line {startup:.1f} s)" if startup is not None else ""
        lines.append(f"    {name:16s} {seconds:6.1f} s{extra}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
