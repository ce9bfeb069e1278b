"""``python -m container.entrypoint serve``: the model server for SageMaker hosting and batch.

SageMaker starts the image with ``serve`` after unpacking model.tar.gz into
``/opt/ml/model``. The server loads the model once, then forks gunicorn's
workers, so ``GET /ping`` answers 200 from the moment the port accepts
connections. ``POST /invocations`` scores CSV, JSON records or Parquet through
``steps.score``, the code path ``make score-local`` uses.

Each worker is a gevent event loop (without monkey-patching): a connection costs
a greenlet, not a process, so slow clients cannot hold the workers, and the
scoring itself runs in one thread per worker, so ``/ping`` answers while every
worker is scoring. A request has ``timeout`` seconds from its headers to its
answer (408 while its body is still arriving, 504 once scoring; the worker is
then replaced), and its headers must arrive within ``KEEPALIVE`` seconds. A
worker holds at most ``BODIES_PER_WORKER`` payloads of request bodies at once.

Settings come from SageMaker's environment variables (a flag wins over its
variable): ``SAGEMAKER_BIND_TO_PORT`` (8080), ``SAGEMAKER_MODEL_SERVER_WORKERS``
(one per CPU, at most ``WORKERS_PER_CPU`` per CPU), ``SAGEMAKER_MODEL_SERVER_TIMEOUT``
(seconds per request, 60) and ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (6, batch
transform's default; 0: no limit).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from conf.contract import OptMl
from conf.errors import UserError, report

log = logging.getLogger("container.serve")

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT = 60
DEFAULT_PAYLOAD_MB = 6
# Each worker holds the model and forks from the server: more than this many per CPU
# only costs memory (a worker serves many connections at once).
WORKERS_PER_CPU = 4
# Seconds a request's headers may take to arrive, and an idle connection stays open.
KEEPALIVE = 5
# A body over the limit is read and dropped up to this size (within the request's
# time), so that the client gets its 413 instead of a reset connection.
DRAIN_LIMIT = 64 * 1024 * 1024
READ_SIZE = 64 * 1024
# Request bodies a worker holds at once, in payload limits (more wait, then get 503).
BODIES_PER_WORKER = 8
# Seconds past the request timeout after which gunicorn replaces a silent worker.
HEARTBEAT_MARGIN = 30
ENV = {
    "port": "SAGEMAKER_BIND_TO_PORT",
    "workers": "SAGEMAKER_MODEL_SERVER_WORKERS",
    "timeout": "SAGEMAKER_MODEL_SERVER_TIMEOUT",
    "max_payload_mb": "SAGEMAKER_MAX_PAYLOAD_IN_MB",
}


class ServeError(UserError):
    """A setting or the model cannot be used: the server does not start."""


@dataclass(frozen=True)
class Settings:
    """How the server runs."""

    host: str
    port: int
    workers: int
    timeout: int
    max_payload_mb: int
    model_dir: Path

    @property
    def max_payload_bytes(self) -> int | None:
        return self.max_payload_mb * 1024 * 1024 if self.max_payload_mb else None

    @property
    def threads_per_worker(self) -> int:
        """Native threads (OpenMP, BLAS) each worker may use: the CPUs shared out."""
        return max(1, cpu_count() // self.workers)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Settings from flags, then SageMaker's environment variables, then defaults."""
    parser = _Parser(
        prog="python -m container.entrypoint serve",
        description="Serve the model in /opt/ml/model (SageMaker hosting and batch transform).",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default: all)")
    parser.add_argument("--port", help=f"default: ${ENV['port']} or {DEFAULT_PORT}")
    parser.add_argument("--workers", help=f"default: ${ENV['workers']} or one per CPU")
    parser.add_argument("--timeout", help=f"seconds; default: ${ENV['timeout']} or 60")
    parser.add_argument(
        "--max-payload-mb", help=f"default: ${ENV['max_payload_mb']} or 6; 0: no limit"
    )
    parser.add_argument("--model-dir", type=Path, help="default: $OPT_ML_ROOT/model")
    args = parser.parse_args(list(argv))

    def number(key: str, default: int, minimum: int, maximum: int | None = None) -> int:
        flag, variable = getattr(args, key), environ.get(ENV[key], "").strip()
        text, source = (flag, f"--{key.replace('_', '-')}") if flag else (variable, ENV[key])
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise ServeError(f"{source}={text!r} must be a whole number {bounds}.")
        return value

    cpus = cpu_count()
    workers = number("workers", cpus, 1)
    if workers > WORKERS_PER_CPU * cpus:
        source = "--workers" if args.workers else ENV["workers"]
        raise ServeError(
            f"{source}={workers} is more workers than this machine can use: at most "
            f"{WORKERS_PER_CPU * cpus} ({WORKERS_PER_CPU} per CPU, {cpus} CPUs). Each worker "
            "holds a copy of the model and serves many connections at once."
        )
    return Settings(
        host=args.host,
        port=number("port", DEFAULT_PORT, 1, 65535),
        workers=workers,
        timeout=number("timeout", DEFAULT_TIMEOUT, 1),
        max_payload_mb=number("max_payload_mb", DEFAULT_PAYLOAD_MB, 0),
        model_dir=args.model_dir or OptMl.from_env().model,
    )


def bind_address(host: str, port: int) -> str:
    """gunicorn's ``bind`` for ``host:port``, once this process could bind it itself.

    A host that is not an address of this machine, a port in use or one that needs
    privileges is a ``ServeError`` (gunicorn would retry, then exit with a traceback).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ServeError(
            f"--host {host!r} is not an address this machine knows ({reason})."
        ) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ServeError(_bind_problem(host, port, exc)) from None
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"Port {port} on {host} is in use (another server is listening there): stop it or "
            f"choose another port with --port or {ENV['port']}."
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host!r} is not an address of this machine: use 0.0.0.0 or 127.0.0.1."
    if exc.errno == errno.EACCES:
        return f"Port {port} needs privileges this process lacks: choose a port above 1023."
    return f"Cannot listen on {host}:{port}: {exc.strerror or exc}."


# ------------------------------------------------------------------------ the app


class RequestTimeout(Exception):
    """The request used up its time (the server's timeout) before its answer was ready."""


def create_app(scorer: Any, config: Settings) -> Any:
    """The WSGI app: ``/ping``, ``/execution-parameters`` and ``/invocations``."""
    from flask import Flask, Response, request
    from werkzeug.exceptions import HTTPException

    from steps.score import (
        RequestError,
        predict,
        read_body,
        render,
        response_type,
        wants_csv_header,
    )

    app = Flask("claim_frequency_serve")

    def text(message: str, status: int) -> Response:
        return Response(" ".join(message.split()) + "\n", status=status, mimetype="text/plain")

    @app.get("/ping")
    def ping() -> Response:
        # The model is loaded before the port opens, so any answer means ready.
        return text("ok", 200)

    @app.get("/execution-parameters")
    def execution_parameters() -> dict[str, Any]:
        return {
            "MaxConcurrentTransforms": config.workers,
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": config.max_payload_mb,
        }

    @app.post("/invocations")
    def invocations() -> Response:
        deadline = time.monotonic() + config.timeout
        request.environ["claim_frequency.deadline"] = deadline
        content_type = request.headers.get("Content-Type")
        accept = request.headers.get("Accept")
        kind = response_type(accept, content_type or "")
        if kind is None:
            raise RequestError(f"Accept {accept} is not supported: use {_answers()}.", 406)
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            raise RequestError(
                f"Content-Encoding {encoding} is not supported: send the body uncompressed.", 415
            )
        budget = body_budget(config)
        try:
            body = read_request_body(request.environ, config, deadline, budget)

            def score() -> bytes:
                frame = read_body(body, content_type, scorer, config.max_payload_bytes)
                predictions = predict(scorer, frame)
                if len(predictions) != len(frame):  # the contract: one prediction per row
                    raise RuntimeError(f"{len(frame)} rows gave {len(predictions)} predictions")
                return render(predictions, kind, csv_header=wants_csv_header(accept))

            payload = run_scoring(score, deadline)
        finally:
            budget.release()
        return Response(payload, status=200, mimetype=kind)

    @app.errorhandler(RequestError)
    def bad_request(err: RequestError) -> Response:
        if err.status != 408:  # a slow body is not waited for again
            _drain(request.environ)
        return text(str(err), err.status)

    @app.errorhandler(RequestTimeout)
    def timed_out(err: RequestTimeout) -> Response:
        response = text(str(err), 504)
        # The scoring thread cannot be stopped: this worker ends once it has answered,
        # and gunicorn starts a new one.
        response.call_on_close(lambda: os.kill(os.getpid(), signal.SIGTERM))
        return response

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        _drain(request.environ)
        routes = "GET /ping, GET /execution-parameters, POST /invocations"
        return text(f"{err.code} {err.name}: this server answers {routes}.", err.code or 500)

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Response:
        log.exception("Unexpected error while scoring")
        _drain(request.environ)
        reason = " ".join(str(err).split()) or type(err).__name__
        return text(f"Unexpected error ({type(err).__name__}: {reason}).", 500)

    return app


def read_request_body(
    environ: Mapping[str, Any], config: Settings, deadline: float, budget: BodyBudget
) -> bytes:
    """The whole request body, or a ``RequestError``: never a body cut short.

    Over the payload limit (by its Content-Length or, chunked, as it arrives): 413.
    Shorter than its Content-Length, or a chunked body that ends early: 400. Still
    arriving when the request's time is up: 408. The bytes are taken from ``budget``
    before they are read (503 if it stays spent until the request's time is up).
    """
    import gevent
    from gunicorn.http.errors import NoMoreData, ParseException

    from steps.score import RequestError

    limit = config.max_payload_bytes
    too_large = RequestError(
        f"The request body is over the payload limit of {config.max_payload_mb} MB: send fewer "
        f"rows per request (or raise {ENV['max_payload_mb']}).",
        413,
    )
    declared = _content_length(environ)
    if limit is not None and declared is not None and declared > limit:
        raise too_large
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    slow = RequestError(
        f"The request body did not arrive within the server's timeout of {config.timeout} s: "
        "send it faster, or fewer rows per request.",
        408,
    )
    try:
        while True:
            budget.take(READ_SIZE, deadline)
            with gevent.Timeout(max(0.0, deadline - time.monotonic()), slow):
                chunk = stream.read(READ_SIZE)
            budget.give(READ_SIZE - len(chunk))
            if not chunk:
                break
            size += len(chunk)
            if limit is not None and size > limit:
                raise too_large
            parts.append(chunk)
    except NoMoreData:
        raise RequestError(
            "The request body ended before its last chunk (the connection closed early): "
            "send the whole body."
        ) from None
    except (ParseException, OSError) as exc:
        raise RequestError(
            f"The request body is not valid chunked encoding ({type(exc).__name__}): send the "
            "whole body, or send it with a Content-Length."
        ) from None
    if declared is not None and size < declared:
        raise RequestError(
            f"The request body ended after {size} of the {declared} bytes its Content-Length "
            "announces: send the whole body."
        )
    return b"".join(parts)


class BodyBudget:
    """The bytes of request bodies one worker holds at once (being read, waiting or scored).

    A connection costs a worker little, so many clients could each send a body up to the
    payload limit at the same time: past ``limit`` bytes, a request waits (within its time)
    for others to finish, then gets 503. Each request gives back what it took
    (``release``) once answered. ``limit`` None: no bound.
    """

    def __init__(self, limit: int | None) -> None:
        from gevent.event import Event

        self.limit = limit
        self.used = 0
        self.taken: dict[int, int] = {}  # by request (greenlet id)
        self._freed = Event()

    def take(self, size: int, deadline: float) -> None:
        """Take ``size`` bytes for the current request; a 503 ``RequestError`` past ``deadline``."""
        from gevent import getcurrent

        from steps.score import RequestError

        while self.limit is not None and self.used and self.used + size > self.limit:
            self._freed.clear()
            if not self._freed.wait(timeout=max(0.0, deadline - time.monotonic())):
                raise RequestError(
                    f"The server holds as many request bodies as it can ({self.limit // 2**20} "
                    "MB per worker) and none finished in time: retry shortly.",
                    503,
                )
        self.used += size
        key = id(getcurrent())
        self.taken[key] = self.taken.get(key, 0) + size

    def give(self, size: int) -> None:
        """Give back ``size`` of the current request's bytes."""
        from gevent import getcurrent

        key = id(getcurrent())
        size = min(size, self.taken.get(key, 0))
        self.taken[key] = self.taken.get(key, 0) - size
        self.used -= size
        self._freed.set()

    def release(self) -> None:
        """Give back every byte the current request took."""
        from gevent import getcurrent

        key = id(getcurrent())
        self.give(self.taken.get(key, 0))
        self.taken.pop(key, None)


def _content_length(environ: Mapping[str, Any]) -> int | None:
    text = str(environ.get("CONTENT_LENGTH") or "").strip()
    return int(text) if text.isdigit() else None


# One scoring thread and one body budget per worker process, made after the fork.
_scoring_pool: Any = None
_abandoned: list[Any] = []  # scoring threads left running past a request's timeout
_budget: BodyBudget | None = None


def body_budget(config: Settings) -> BodyBudget:
    """This worker's ``BodyBudget``: ``BODIES_PER_WORKER`` payloads (none without a limit)."""
    global _budget
    if _budget is None:
        limit = config.max_payload_bytes
        _budget = BodyBudget(limit * BODIES_PER_WORKER if limit is not None else None)
    return _budget


def run_scoring(work: Callable[[], bytes], deadline: float) -> bytes:
    """``work()`` in the worker's scoring thread, so the event loop answers meanwhile.

    Requests queue for the thread; past ``deadline`` it is a ``RequestTimeout``.
    """
    global _scoring_pool
    import gevent
    from gevent.threadpool import ThreadPool

    def guarded() -> tuple[bytes, Exception | None]:
        # An error goes back to the request (gevent would print it as the pool's own).
        try:
            return work(), None
        except Exception as exc:
            return b"", exc

    if _scoring_pool is None:
        _scoring_pool = ThreadPool(1)
    pool = _scoring_pool
    result = pool.spawn(guarded)
    try:
        payload, error = result.get(timeout=max(0.0, deadline - time.monotonic()))
    except gevent.Timeout:
        if _scoring_pool is pool:
            # A thread cannot be stopped: the requests that follow get a new one while this
            # worker is replaced, and the old one ends with the worker (``_end_worker``).
            _scoring_pool = None
            _abandoned.append(pool)
            gevent.spawn(pool.kill)
        raise RequestTimeout(
            "Scoring took longer than the server's timeout: send fewer rows per request "
            f"(or raise {ENV['timeout']})."
        ) from None
    if error is not None:
        raise error
    return bytes(payload)


def _answers() -> str:
    from conf.contract import RESPONSE_CONTENT_TYPES

    return " or ".join(RESPONSE_CONTENT_TYPES)


def _drain(environ: Mapping[str, Any]) -> None:
    """Read what is left of the request body (up to ``DRAIN_LIMIT``, within the request's
    time) so the reply is seen."""
    import gevent

    stream = environ.get("wsgi.input")
    if stream is None:
        return
    deadline = environ.get("claim_frequency.deadline") or time.monotonic() + KEEPALIVE
    remaining = DRAIN_LIMIT
    with gevent.Timeout(max(0.0, deadline - time.monotonic()), False):
        try:
            while remaining > 0:
                chunk = stream.read(min(remaining, READ_SIZE))
                if not chunk:
                    return
                remaining -= len(chunk)
        except Exception:  # a broken body: nothing more to read
            return


# --------------------------------------------------------------------------- gunicorn


def gunicorn_options(config: Settings) -> dict[str, Any]:
    """gunicorn's settings: gevent workers (``worker_class``), each scoring in one thread."""
    options: dict[str, Any] = {
        "bind": bind_address(config.host, config.port),
        "workers": config.workers,
        "worker_class": worker_class(),
        "worker_connections": 1000,
        "keepalive": KEEPALIVE,
        # The request timeout is the app's (408, 504); gunicorn's only ends a worker whose
        # event loop stopped answering, which no request can make it do.
        "timeout": config.timeout + HEARTBEAT_MARGIN,
        "graceful_timeout": min(config.timeout, 30),
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "claim-frequency-serve",
        # No runtime control socket: nothing may reconfigure the server from outside.
        "control_socket_disable": True,
        "post_fork": _limit_threads(config.threads_per_worker),
        "worker_exit": _end_worker,
    }
    if os.access("/dev/shm", os.W_OK):  # heartbeat files off the container's overlay disk
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def worker_class() -> type:
    """gunicorn's gevent worker, without monkey-patching the standard library.

    Only the listening sockets become gevent sockets (and so every connection): the
    request path never blocks on anything else, and the scoring thread runs NumPy and
    scikit-learn with the standard library's own threads and locks.
    """
    from gevent import socket as gevent_socket
    from gunicorn.workers.ggevent import GeventWorker

    def wrap_listeners(worker: Any) -> None:  # in place of GeventWorker.patch
        worker.sockets = [
            gevent_socket.socket(s.FAMILY, socket.SOCK_STREAM, fileno=s.sock.detach())
            for s in worker.sockets
        ]

    return type("ScoringWorker", (GeventWorker,), {"patch": wrap_listeners})


def _limit_threads(threads: int) -> Callable[[Any, Any], None]:
    def post_fork(server: Any, worker: Any) -> None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)

    return post_fork


def _end_worker(server: Any, worker: Any) -> None:
    """gunicorn's ``worker_exit``: a worker that left a scoring thread running ends now.

    The interpreter would wait for the thread to finish its task, holding a CPU.
    """
    if not _abandoned:
        return
    error = sys.exc_info()[1]
    code = error.code if isinstance(error, SystemExit) and isinstance(error.code, int) else 0
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def run_gunicorn(app: Any, options: Mapping[str, Any]) -> NoReturn:
    """Run gunicorn's master with ``app`` already loaded (workers fork from it)."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    Server().run()
    raise SystemExit(0)


# ------------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        usage = self.format_usage().strip().removeprefix("usage: ")
        raise ServeError(f"{message}. Usage: {usage}")


def main(argv: Iterable[str] = ()) -> int:
    """Load the model and serve it; returns 2 (with one paragraph) if it cannot start."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    try:
        config = settings(list(argv), os.environ)
        bind_address(config.host, config.port)  # before the model loads: fail fast
        from steps.score import load_scorer

        scorer = load_scorer(config.model_dir)
        options = gunicorn_options(config)  # binds the address again, just before gunicorn
    except UserError as err:
        return report(err)
    payload = f"{config.max_payload_mb} MB" if config.max_payload_mb else "none"
    log.info(
        "Serving %s on http://%s:%d: %d workers (%d threads each), timeout %d s, payload limit %s",
        scorer.describe(),
        config.host,
        config.port,
        config.workers,
        config.threads_per_worker,
        config.timeout,
        payload,
    )
    run_gunicorn(create_app(scorer, config), options)
