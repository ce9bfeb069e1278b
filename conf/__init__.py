"""The config tree and the one ``compose(overrides)`` helper every entrypoint uses."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from pathlib import Path

from hydra import compose as _hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf.schema import Config, ParameterType, register_configs, schemas

CONF_DIR = Path(__file__).resolve().parent
CONFIG_NAME = "config"
GROUPS = tuple(
    sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and not p.name.startswith("_"))
)

register_configs()


def compose(overrides: Sequence[str] = (), config_dir: Path | None = None) -> DictConfig:
    """Compose ``config.yaml`` with Hydra overrides into one validated config.

    ``config_dir`` defaults to the packaged tree; a job passes the tree uploaded
    in its config channel. Unknown keys and wrong types raise
    ``hydra.errors.ConfigCompositionException`` naming the offending override.
    """
    require_units()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    config_dir = Path(config_dir or CONF_DIR).resolve()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = _hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))
    validate(cfg)
    return cfg


def require_units() -> None:
    """Fail, naming the fix, when no model or data source has stored its schema yet."""
    missing = [group for group, options in schemas().items() if not options]
    if missing:
        raise RuntimeError(
            f"No {' or '.join(missing)} schemas are registered: an entrypoint calls "
            "steps.register_schemas() before it composes a config."
        )


def validate(cfg: DictConfig) -> None:
    """Check the whole config against the schema, keys added with ``+`` included.

    Hydra already rejects unknown keys; an explicit append (``+model.foo=1``)
    bypasses that, so the composed config is merged into the schema once more.
    """
    selectors = {"data": "source", "model": "name"}
    options = schemas()
    try:
        _conform(Config, cfg)
        for group, selector in selectors.items():
            choice = cfg[group][selector]
            if choice not in options[group]:
                known = ", ".join(options[group])
                raise ConfigCompositionException(
                    f"{group}.{selector}='{choice}': use one of {known}"
                )
            composed = OmegaConf.get_type(cfg[group])
            if dataclasses.is_dataclass(composed) and composed is not options[group][choice]:
                raise ConfigCompositionException(
                    f"{group}.{selector}='{choice}' contradicts the selected {group} group "
                    f"({composed.__name__}): switch the whole group with {group}=<option> "
                    f"instead of setting {group}.{selector}"
                )
            _conform(options[group][choice], cfg[group], prefix=f"{group}.")
    except OmegaConfBaseException as err:
        raise ConfigCompositionException(f"Invalid config: {err}") from err
    _check_search_space(cfg)


def _check_search_space(cfg: DictConfig) -> None:
    """Every tuned parameter is a key of the selected model with a well-formed range.

    The schema's enums already checked each range's ``type`` and ``scaling``.
    """
    for key, spec in cfg.tuning.parameters.items():
        where = f"tuning.parameters.{key}"
        problem = None
        if key == "name" or key not in cfg.model:
            keys = ", ".join(k for k in cfg.model if k != "name") or "none"
            problem = f"is not a key of model '{cfg.model.name}' (keys: {keys})"
        elif spec.type == ParameterType.categorical and not spec["values"]:
            problem = "is categorical and needs a list of values"
        elif spec.type != ParameterType.categorical and not (
            spec.min is not None and spec.max is not None and spec.min < spec.max
        ):
            problem = f"needs min < max (got min={spec.min}, max={spec.max})"
        if problem:
            raise ConfigCompositionException(f"{where} {problem}.")


def _conform(schema: type, node: DictConfig, prefix: str = "") -> None:
    """Merge ``node`` into ``schema`` (wrong types raise) and reject keys it does not have."""
    OmegaConf.merge(OmegaConf.structured(schema), node)
    hints = typing.get_type_hints(schema)
    for key in node:
        path = f"{prefix}{key!s}"
        if key not in hints:
            raise ConfigCompositionException(
                f"Unknown config key '{path}' (not in {schema.__name__}; "
                f"known keys: {', '.join(hints)})"
            )
        if OmegaConf.is_missing(node, key) or not isinstance(node[key], DictConfig):
            continue  # a required value (`???`) is reported by name where it is needed
        if isinstance(hints[key], type) and dataclasses.is_dataclass(hints[key]):
            _conform(hints[key], node[key], prefix=f"{path}.")
        elif typing.get_origin(hints[key]) is dict:
            item_type = typing.get_args(hints[key])[1]
            if isinstance(item_type, type) and dataclasses.is_dataclass(item_type):
                for name, item in node[key].items():
                    _conform(item_type, item, prefix=f"{path}.{name}.")


def user_message(err: BaseException) -> str:
    """One paragraph for a config error: Hydra's text without its search path, plus the cause."""
    text = str(err).split("Config search path:", 1)[0]
    parts, options = [], []
    for line in text.splitlines():
        if line.startswith("\t"):  # Hydra lists a group's options one per line
            options.append(line.strip())
        elif line.strip():
            parts.append(line.strip().rstrip("."))
    message = ". ".join(parts)
    if options:
        message += " " + ", ".join(options)
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException) and str(cause).strip():
        message += f" ({str(cause).strip().splitlines()[0]})"
    return message


def merge_overrides(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """Layer ``extra`` overrides on top of ``base``.

    A later override of a key replaces an earlier one; switching a group
    (``model=glm_poisson``) drops the earlier overrides inside that group
    (``model.max_leaf_nodes=64``), which no longer apply.
    """
    merged: list[str] = list(base)
    for override in extra:
        key = override_key(override)
        group_switch = key in GROUPS

        def superseded(old: str, key: str = key, group_switch: bool = group_switch) -> bool:
            old_key = override_key(old)
            return old_key == key or (group_switch and old_key.startswith(key + "."))

        merged = [old for old in merged if not superseded(old)]
        merged.append(override)
    return merged


def override_key(override: str) -> str:
    """The key an override sets: ``+model.alpha=1`` -> ``model.alpha``."""
    key = override.split("=", 1)[0].strip()
    return key.lstrip("+~").split("@", 1)[0]


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (what every run saves beside its outputs).

    Credential values from the environment are redacted (``conf.secrets``).
    """
    from conf.secrets import redact

    return redact(OmegaConf.to_yaml(cfg, resolve=True))


__all__ = [
    "CONF_DIR",
    "GROUPS",
    "compose",
    "merge_overrides",
    "override_key",
    "to_yaml",
    "user_message",
    "validate",
]
