"""A warm image process: the image's Python command with its libraries already loaded.

A job started cold spends seconds importing its libraries before any work. Here
``python -m executor.warm serve SOCKET MODULE...`` imports the modules once
and then forks a copy of itself for each job. The copy runs ``python -m <module> ARGS``
in-process (``runpy``) with the job's environment, working folder and log, as a process
of its own; with tmpfs isolation it first enters a mount namespace of its own with each
declared folder a tmpfs, as ``sandbox.py`` does. A job sees what a fresh process sees:
its own ``/opt/ml`` tree, environment, arguments and exit status.

The command the runner starts for a warm job is the client,
``python -S warm.py client SOCKET SPEC.json``: it hands its standard output (the job's
log) to the server, relays SIGTERM and SIGINT, and exits with the job's status. Where the
server cannot be reached, the client runs the job's cold command itself.

Standard library only, and nothing of the project: the modules to load are arguments.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import re
import runpy
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

if __package__:  # the server; the client runs by path, with the standard library only
    from executor.sandbox import SETUP_FAILED, collect, exit_status, mount_folders

CLONE_NEWNS = 0x00020000


# ----------------------------------------------------------------------------- server


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """The cyclic garbage collector waits while the block loads libraries.

    Importing scikit-learn, pandas or the SageMaker SDK (about a thousand pydantic
    models) creates millions of objects; the collector's passes over them cost a large
    share of the import. What is loaded stays for the whole process: on leaving,
    ``gc.freeze`` moves it out of later collections. (The jobs' own entrypoints do
    the same with ``steps.runtime.speed``, on their side of the contract.)
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def serve(socket_path: str, modules: list[str]) -> None:
    """Load ``modules``, then fork one job process per connection until the parent ends."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(64)  # clients wait here while the modules load
    with loading():
        for module in modules:
            importlib.import_module(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # job processes are reaped at once
    parent = os.getppid()
    server.settimeout(0.5)
    while os.getppid() == parent:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 1
            try:
                code = run_job(conn)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        conn.close()


def run_job(conn: socket.socket) -> int:
    """In the forked copy: set up the job's folders, run it, report its status."""
    _, fds, _, _ = socket.recv_fds(conn, 1, 1)
    log = fds[0]
    payload = b""
    while not payload.endswith(b"\n"):
        data = conn.recv(1 << 16)
        if not data:
            return 0  # the client went away before the job started
        payload += data
    request = json.loads(payload)
    spec = {**json.loads(Path(request["spec"]).read_text()), "env": request["env"]}
    mounts = spec.get("mounts")
    if mounts is not None:
        try:
            _own_mount_namespace()
            mount_folders(mounts)
        except (OSError, subprocess.CalledProcessError) as exc:
            Path(spec["error"]).write_text(f"{type(exc).__name__}: {exc}")
            conn.sendall(f"{SETUP_FAILED}\n".encode())
            return 0
    pid = os.fork()
    if pid == 0:
        _run_module(spec, log)
    os.close(log)
    code = exit_status(_wait(pid, conn))
    if mounts is not None:
        collect(mounts)
    with contextlib.suppress(OSError):
        conn.sendall(f"{code}\n".encode())
    return 0


def _wait(pid: int, conn: socket.socket) -> int:
    """The job's return code; signals from the client reach the job's process group."""
    watched = [conn]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        ready, _, _ = select.select(watched, [], [], 0.05)
        if not ready:
            continue
        data = conn.recv(64)
        if not data:  # the client is gone (killed): so is the job
            watched = []
            signum = signal.SIGKILL
        else:
            signum = signal.Signals(int(data.split()[-1]))
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:  # not yet the leader of its own group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def _run_module(spec: dict[str, Any], log: int) -> NoReturn:
    """In the job's process: ``python -m MODULE ARGS`` with the job's environment and log."""
    os.setsid()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(spec["cwd"])
    os.environ.clear()
    os.environ.update(spec["env"])
    if spec["env"].get("OMP_NUM_THREADS", "").isdigit():
        openmp_threads(int(spec["env"]["OMP_NUM_THREADS"]))
    sys.argv = [spec["module"], *spec["args"]]
    sys.modules.pop(spec["module"], None)  # runs fresh as __main__, as ``python -m`` runs it
    code: int = 0
    try:
        runpy.run_module(spec["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def openmp_threads(count: int) -> None:
    """Apply ``OMP_NUM_THREADS`` to the OpenMP runtimes this process already loaded.

    A runtime reads the variable when it loads, which for a warm job was in the server:
    its default is set again here, as a fresh process would have it.
    """
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if _OPENMP.search(line)}
    for path in paths:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(path).omp_set_num_threads(count)


_OPENMP = re.compile(r"/lib(gomp|omp|iomp5)[^/]*\.so")


def _own_mount_namespace() -> None:
    """This process in a mount namespace of its own, its mounts private (``unshare --mount``)."""
    if hasattr(os, "unshare"):
        os.unshare(os.CLONE_NEWNS)  # type: ignore[attr-defined]  # Python 3.12+
    else:  # Python 3.11
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNS) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), "unshare(CLONE_NEWNS)")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True, capture_output=True)


# ----------------------------------------------------------------------------- runner side


class WarmImage:
    """A running warm server for one image command, ``python -m MODULE``.

    ``module`` may be set once the image's command is known (the server starts first).
    """

    def __init__(
        self,
        interpreter: str,
        module: str | None,
        preload: list[str],
        cwd: Path,
        env: dict[str, str],
        folder: Path,
    ) -> None:
        self.interpreter, self.module = interpreter, module
        self.socket = str(folder / "warm.sock")
        self.log = folder / "warm.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [interpreter, "-m", "executor.warm", "serve", self.socket, *preload],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        # The server listens before it loads anything: wait for that (a moment), so that
        # a job started now reaches it. If it cannot start, jobs run cold.
        deadline = time.monotonic() + 10
        while not Path(self.socket).exists() and self.process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)

    def runs(self, command: list[str]) -> bool:
        """Whether ``command`` is this image's ``python -m MODULE ...``."""
        return self.module is not None and command[:3] == [self.interpreter, "-m", self.module]

    def client_command(self, spec: Path) -> list[str]:
        return [self.interpreter, "-S", str(Path(__file__)), "client", self.socket, str(spec)]

    def close(self) -> None:
        """Stop the server (jobs it started have ended by then)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# ----------------------------------------------------------------------------- client


def client(socket_path: str, spec_path: str) -> int:
    """The job's command: the warm server runs the job; this process stands for it."""
    spec = json.loads(Path(spec_path).read_text())
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        for attempt in range(20):  # refused only between the server's bind and its listen
            try:
                conn.connect(socket_path)
                break
            except ConnectionRefusedError:
                if attempt == 19:
                    raise
                time.sleep(0.05)
        socket.send_fds(conn, [b"F"], [sys.stdout.fileno()])
        # This process's environment is the job's (it stays in memory: it may hold credentials).
        request = {"spec": spec_path, "env": dict(os.environ)}
        conn.sendall(json.dumps(request).encode() + b"\n")
    except OSError:
        sys.stdout.flush()
        os.execvp(spec["cold"][0], spec["cold"])  # no server: the job's own command

    def relay(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(f"{signum}\n".encode())

    signal.signal(signal.SIGTERM, relay)
    signal.signal(signal.SIGINT, relay)
    reply = b""
    while not reply.endswith(b"\n"):
        data = conn.recv(64)
        if not data:
            print("The warm job process ended without a status.", file=sys.stderr, flush=True)
            return 1
        reply += data
    return int(reply)


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(argv[1], argv[2:])
        return 0
    if argv[:1] == ["client"]:
        return client(argv[1], argv[2])
    print("usage: warm.py serve SOCKET MODULE... | client SOCKET SPEC.json", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
