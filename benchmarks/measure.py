"""Run one command and print its wall time, CPU time and peak memory (RSS) as JSON."""

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
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime  # less sensitive than wall time to other load
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_mib": usage.ru_maxrss / 1024}))


if __name__ == "__main__":
    main(sys.argv[1:])
