"""The config tree composes, and bad overrides fail with a message naming the key."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from conf import GROUPS, compose, merge_overrides
from conf.channel import compose_from_channel, digest, parse_overrides, write_channel


def test_default_composition() -> None:
    cfg = compose()
    assert cfg.data.source == "synthetic"
    assert cfg.data.n_rows == 678_013
    assert cfg.model.name == "hgb_poisson"
    assert cfg.tuning.parameters.max_leaf_nodes.type == "integer"
    assert cfg.data.true_frequency not in [*cfg.data.categorical, *cfg.data.numeric]
    assert not OmegaConf.missing_keys(cfg)


@pytest.mark.parametrize("model", ["hgb_poisson", "glm_poisson", "constant"])
def test_tuning_space_follows_the_model(model: str) -> None:
    cfg = compose([f"model={model}"])
    assert cfg.model.name == model
    assert set(cfg.tuning.parameters) <= set(cfg.model)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data=fremtpl2freq"], ("openml", 41214)),
        (["experiment=prod"], ("openml", "tune")),
        (["data=file", "data.path=x.csv"], ("file", "x.csv")),
    ],
)
def test_group_switches(overrides: list[str], expected: tuple) -> None:
    cfg = compose(overrides)
    assert cfg.data.source == expected[0]
    assert expected[1] in (cfg.data.get("dataset_id"), cfg.pipeline.mode, cfg.data.get("path"))


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("model.max_leaf_nodez=64", "model.max_leaf_nodez"),
        ("model.max_leaf_nodes=many", "model.max_leaf_nodes"),
        ("+model.foo=1", "foo"),
        ("model=gbm", "gbm"),
        ("split.test_fraction=abc", "split.test_fraction"),
        ("data.n_rows=1.5", "data.n_rows"),
    ],
)
def test_bad_override_names_the_key(override: str, named: str) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose([override])
    text = str(info.value) + str(info.value.__cause__ or "")
    assert named in text


def test_glm_keys_are_not_accepted_by_the_boosting_model() -> None:
    with pytest.raises(ConfigCompositionException):
        compose(["model.alpha=0.1"])


def test_groups_are_discovered() -> None:
    assert {"data", "model", "split", "evaluation", "tuning", "experiment"} <= set(GROUPS)


def test_merge_overrides_later_wins_and_group_switch_drops_its_keys() -> None:
    base = ["model.max_leaf_nodes=64", "data.n_rows=1000", "seed=1"]
    merged = merge_overrides(base, ["model=glm_poisson", "model.alpha=0.01", "seed=2"])
    assert merged == ["data.n_rows=1000", "model=glm_poisson", "model.alpha=0.01", "seed=2"]
    assert compose(merged).model.alpha == 0.01


def test_channel_round_trip(tmp_path) -> None:
    folder = tmp_path / "channel"
    cfg = write_channel(folder, ["model.max_leaf_nodes=64", "pipeline=tune"])
    assert OmegaConf.load(folder / "config.yaml") == OmegaConf.create(
        OmegaConf.to_container(cfg, resolve=True)
    )
    again = compose_from_channel(folder)
    assert again.model.max_leaf_nodes == 64 and again.pipeline.mode == "tune"
    switched = compose_from_channel(folder, parse_overrides("model=glm_poisson model.alpha=0.01"))
    assert switched.model.name == "glm_poisson" and switched.model.alpha == 0.01
    assert switched.pipeline.mode == "tune"


def test_channel_uses_the_uploaded_tree_not_the_packaged_one(tmp_path) -> None:
    folder = tmp_path / "channel"
    write_channel(folder, [])
    first = digest(folder)
    model_yaml = folder / "conf" / "model" / "hgb_poisson.yaml"
    model_yaml.write_text(model_yaml.read_text().replace("max_leaf_nodes: 31", "max_leaf_nodes: 7"))
    assert compose_from_channel(folder).model.max_leaf_nodes == 7
    assert digest(folder) != first


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("tuning=glm_poisson", "not a key of model 'hgb_poisson'"),
        ("tuning.parameters.max_leaf_nodes.type=float", "has type 'float'"),
        ("tuning.parameters.max_leaf_nodes.scaling=Log", "has scaling 'Log'"),
        ("tuning.parameters.max_leaf_nodes.min=500", "needs min < max"),
        ("tuning.parameters.max_leaf_nodes.type=categorical", "needs a list of values"),
    ],
)
def test_bad_search_space_is_named_at_compose_time(override: str, named: str) -> None:
    with pytest.raises(ConfigCompositionException, match=named) as info:
        compose([override])
    assert "tuning.parameters." in str(info.value)


def test_categorical_ranges_reach_local_tuning() -> None:
    import optuna

    from pipelines.tune_local import suggest

    cfg = compose(
        [
            "tuning.parameters.max_leaf_nodes.type=categorical",
            "tuning.parameters.max_leaf_nodes.values=[16,64]",
        ]
    )
    trial = optuna.create_study().ask()
    assert suggest(trial, cfg.tuning.parameters)["max_leaf_nodes"] in ("16", "64")
