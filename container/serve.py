"""``python -m container.entrypoint serve``: the model server for SageMaker hosting and batch.

SageMaker starts the image with ``serve`` after unpacking model.tar.gz into
``/opt/ml/model``. The server loads the model once, then forks gunicorn's
workers, so ``GET /ping`` answers 200 from the moment the port accepts
connections. ``POST /invocations`` scores CSV, JSON records or Parquet through
``steps.score``, the code path ``make score-local`` uses.

Settings come from SageMaker's environment variables (a flag wins over its
variable): ``SAGEMAKER_BIND_TO_PORT`` (8080), ``SAGEMAKER_MODEL_SERVER_WORKERS``
(one per CPU), ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (seconds per request, 60) and
``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (6, batch transform's default; 0: no limit).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
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
# A body over the limit is read and dropped up to this size, so that the client
# gets its 413 instead of a reset connection; beyond it the connection is closed.
DRAIN_LIMIT = 64 * 1024 * 1024
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

    def number(key: str, default: int, minimum: int) -> int:
        flag, variable = getattr(args, key), environ.get(ENV[key], "").strip()
        text, source = (flag, f"--{key.replace('_', '-')}") if flag else (variable, ENV[key])
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise ServeError(f"{source}={text!r} must be a whole number >= {minimum}.")
        return value

    return Settings(
        host=args.host,
        port=number("port", DEFAULT_PORT, 1),
        workers=number("workers", cpu_count(), 1),
        timeout=number("timeout", DEFAULT_TIMEOUT, 1),
        max_payload_mb=number("max_payload_mb", DEFAULT_PAYLOAD_MB, 0),
        model_dir=args.model_dir or OptMl.from_env().model,
    )


# ------------------------------------------------------------------------ the app


def create_app(scorer: Any, config: Settings) -> Any:
    """The WSGI app: ``/ping``, ``/execution-parameters`` and ``/invocations``."""
    from flask import Flask, Response, request
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    from steps.score import (
        RequestError,
        predict,
        read_body,
        render,
        response_type,
        wants_csv_header,
    )

    app = Flask("claim_frequency_serve")
    app.config["MAX_CONTENT_LENGTH"] = config.max_payload_bytes

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
        content_type = request.headers.get("Content-Type")
        accept = request.headers.get("Accept")
        kind = response_type(accept, content_type or "")
        if kind is None:
            raise RequestError(f"Accept {accept} is not supported: use {_answers()}.", 406)
        limit = config.max_payload_bytes
        if limit is not None and (request.content_length or 0) > limit:
            raise RequestEntityTooLarge()
        body = request.get_data(cache=False)
        predictions = predict(scorer, read_body(body, content_type, scorer))
        payload = render(predictions, kind, csv_header=wants_csv_header(accept))
        return Response(payload, status=200, mimetype=kind)

    @app.errorhandler(RequestError)
    def bad_request(err: RequestError) -> Response:
        _drain(request.environ)
        return text(str(err), err.status)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> Response:
        _drain(request.environ)
        return text(
            f"The request body is over the payload limit of {config.max_payload_mb} MB: "
            "send fewer rows per request (or raise SAGEMAKER_MAX_PAYLOAD_IN_MB).",
            413,
        )

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


def _answers() -> str:
    from conf.contract import RESPONSE_CONTENT_TYPES

    return " or ".join(RESPONSE_CONTENT_TYPES)


def _drain(environ: Mapping[str, Any]) -> None:
    """Read what is left of the request body (up to ``DRAIN_LIMIT``) so the reply is seen."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    remaining = DRAIN_LIMIT
    try:
        while remaining > 0:
            chunk = stream.read(min(remaining, 1024 * 1024))
            if not chunk:
                return
            remaining -= len(chunk)
    except (OSError, ValueError):
        return


# --------------------------------------------------------------------------- gunicorn


def gunicorn_options(config: Settings) -> dict[str, Any]:
    """gunicorn's settings: sync workers, so the timeout ends a request that runs too long."""
    options: dict[str, Any] = {
        "bind": f"{config.host}:{config.port}",
        "workers": config.workers,
        "worker_class": "sync",
        "timeout": config.timeout,
        "graceful_timeout": min(config.timeout, 30),
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "claim-frequency-serve",
        # No runtime control socket: nothing may reconfigure the server from outside.
        "control_socket_disable": True,
        "post_fork": _limit_threads(config.threads_per_worker),
    }
    if os.access("/dev/shm", os.W_OK):  # heartbeat files off the container's overlay disk
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def _limit_threads(threads: int) -> Callable[[Any, Any], None]:
    def post_fork(server: Any, worker: Any) -> None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)

    return post_fork


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
        from steps.score import load_scorer

        scorer = load_scorer(config.model_dir)
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
    run_gunicorn(create_app(scorer, config), gunicorn_options(config))
