"""The config tree and the one ``compose(overrides)`` helper every entrypoint uses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose as _hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from conf.schema import SCHEMAS, register_configs

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
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    config_dir = Path(config_dir or CONF_DIR).resolve()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = _hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))
    return cfg


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
    """The resolved config as YAML (what every run saves beside its outputs)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


__all__ = ["CONF_DIR", "GROUPS", "SCHEMAS", "compose", "merge_overrides", "override_key", "to_yaml"]
