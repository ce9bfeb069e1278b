"""Run one command and print its wall time and peak memory (RSS) as JSON."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main(cmd: list[str]) -> None:
    start = time.perf_counter()
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        sys.exit(result.returncode)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"wall_s": wall, "peak_mib": peak_kib / 1024}))


if __name__ == "__main__":
    main(sys.argv[1:])
