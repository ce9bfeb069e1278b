"""Turn a training job's hyperparameters.json into Hydra overrides.

SageMaker hands every hyperparameter over as a string. Three kinds of keys:

* ``overrides``: a Hydra override string (``model=glm_poisson model.alpha=0.01``;
  ``none``, empty or missing: no overrides; SageMaker drops empty values);
* ``input_data_uri``: an S3 data set to train on instead of the configured
  source (``data=file data.path=<uri>``, before the override string);
* keys starting with ``_`` or ``sagemaker_``: added by SageMaker or the tuner, ignored;
* any other key names a config value (``model.max_leaf_nodes``, set by a tuning
  job) and becomes a typed override ``key=value``, applied after the string.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.nodes import BooleanNode, FloatNode, IntegerNode

from conf import contract
from conf.contract import INPUT_DATA_KEY, OVERRIDES_KEY, unset_to_empty
from conf.errors import ConfigError

PLATFORM_PREFIXES = ("_", "sagemaker_")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def decode(value: Any) -> str:
    """A hyperparameter value as plain text; a JSON-encoded string is decoded once."""
    if not isinstance(value, str):
        return json.dumps(value)
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


def read(path: Path) -> dict[str, str]:
    """The hyperparameters of a training job (``{}`` if the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The hyperparameters file '{path}' is not valid JSON ({exc}).") from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            f"The hyperparameters file '{path}' must hold a JSON object of name -> value, "
            f"not {type(raw).__name__}."
        )
    return {str(k): decode(v) for k, v in raw.items()}


def input_data_overrides(uri: str) -> str:
    """Overrides that read the data set at ``uri`` (``none`` or empty: the configured source)."""
    return shlex.join(contract.input_data_overrides(uri))


def split(hyperparameters: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The override string and the config-key hyperparameters (platform keys dropped)."""
    special = (OVERRIDES_KEY, INPUT_DATA_KEY)
    keys = {
        k: v
        for k, v in hyperparameters.items()
        if k not in special and not k.startswith(PLATFORM_PREFIXES)
    }
    data = input_data_overrides(hyperparameters.get(INPUT_DATA_KEY, ""))
    overrides = unset_to_empty(hyperparameters.get(OVERRIDES_KEY))
    return f"{data} {overrides}".strip(), keys


def typed_override(cfg: DictConfig, key: str, value: str) -> str:
    """``key=value`` as a Hydra override typed by the config node ``key`` names.

    Integers, floats and booleans are checked here so the message names the
    hyperparameter; strings are quoted so that commas, spaces or brackets in a
    value stay part of it. ``null`` clears an optional value.
    """
    node = _value_node(cfg, key)
    text = value.strip()
    if text == "null":
        return f"{key}=null"
    if isinstance(node, ListConfig):
        return f"{key}={text}"
    if isinstance(node, BooleanNode):
        if text.lower() not in _TRUE | _FALSE:
            raise _type_error(key, value, "a boolean (true or false)")
        return f"{key}={str(text.lower() in _TRUE).lower()}"
    if isinstance(node, IntegerNode):
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number.is_integer()):
            raise _type_error(key, value, "an integer")
        return f"{key}={int(number)}"
    if isinstance(node, FloatNode):
        try:
            return f"{key}={float(text)!r}"
        except ValueError:
            raise _type_error(key, value, "a number") from None
    return f"{key}={quote(value)}"


def quote(value: str) -> str:
    """A string as a single-quoted Hydra override value."""
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"'{escaped}'"


def _value_node(cfg: DictConfig, key: str) -> Any:
    """The node ``key`` names; a ``ConfigError`` naming the valid keys if there is none."""
    if not _KEY.fullmatch(key):
        raise ConfigError(
            f"Hyperparameter '{key}' is not a config key: use dotted names such as "
            "'model.max_leaf_nodes', or put Hydra overrides in the 'overrides' hyperparameter."
        )
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig) or leaf not in parent:
        where = f"under '{parent_key}'" if parent_key else "at the top level"
        known = ", ".join(sorted(parent)) if isinstance(parent, DictConfig) else "none"
        raise ConfigError(
            f"Unknown hyperparameter '{key}': it is not a key of the job's config "
            f"(keys {where}: {known}). Hyperparameters other than 'overrides' must name "
            "config values; those added by SageMaker start with '_' or 'sagemaker_'."
        )
    node = parent._get_node(leaf)
    if isinstance(node, DictConfig):
        raise ConfigError(
            f"Hyperparameter '{key}' names a config section, not a value: switch a group "
            f"in the 'overrides' hyperparameter (e.g. '{key}=<option>')."
        )
    return node


def _type_error(key: str, value: str, expected: str) -> ConfigError:
    return ConfigError(f"Hyperparameter '{key}'='{value}' is not {expected}.")
