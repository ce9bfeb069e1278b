"""Keeping credentials out of runs: no environment or file reads in runtime overrides, and
credential values redacted from everything a run writes.

The packaged config may read non-secret settings from the environment on purpose
(``sagemaker.region: ${oc.env:AWS_REGION,null}``). Overrides given at run time (the
command line, the ``HydraOverrides`` pipeline parameter, hyperparameters) may not: a
resolver there could copy a secret into ``config.yaml``, a log or ``metrics.json``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

from hydra.errors import ConfigCompositionException

# Resolvers a runtime override may call: they only reshape values already in the config.
SAFE_RESOLVERS = frozenset(
    {"now", "oc.select", "oc.decode", "oc.create", "oc.dict.keys", "oc.dict.values"}
)
_RESOLVER_CALL = re.compile(r"\$\{\s*([A-Za-z_][\w.\-]*)\s*:")
# Environment variables whose values are credentials, by name.
_CREDENTIAL_NAME = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|API_KEY|ACCESS_KEY", re.IGNORECASE
)
# Shorter values are not redacted: they would mangle ordinary words and numbers.
MIN_SECRET_LENGTH = 8
REDACTED = "***"


def check_runtime_overrides(overrides: Iterable[str], source: str = "the command line") -> None:
    """Refuse runtime overrides that call a resolver able to read the environment or files.

    Raises ``ConfigCompositionException`` naming the override and the resolver.
    """
    for override in overrides:
        for name in _RESOLVER_CALL.findall(str(override)):
            if name not in SAFE_RESOLVERS:
                raise ConfigCompositionException(
                    f"The override {override!r} from {source} calls the resolver '{name}'. "
                    "Overrides given at run time may not read the environment or files "
                    "(their values would be saved with the run's outputs and logs): "
                    "put the literal value in the override, or read it in the packaged "
                    "config. Allowed resolvers: " + ", ".join(sorted(SAFE_RESOLVERS)) + "."
                )


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of credential-like environment variables, longest first."""
    env = os.environ if environ is None else environ
    values = {
        v for k, v in env.items() if _CREDENTIAL_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every credential value from the environment replaced by ``***``."""
    for value in secret_values(environ):
        text = text.replace(value, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts credential values from every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a ``RedactingFilter`` to every handler of ``logger`` (default: the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
