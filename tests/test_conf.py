"""The config tree composes, states each default once, and bad overrides fail naming the key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import typing
from enum import Enum
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf import MISSING, OmegaConf

from conf import CONF_DIR, GROUPS, compose, merge_overrides, user_message
from conf.channel import (
    CHANNEL_VERSION,
    VERSION_FILE,
    ChannelVersionError,
    compose_from_channel,
    digest,
    parse_overrides,
    write_channel,
)
from conf.schema import (
    Config,
    ObjectiveType,
    ParameterType,
    PipelineMode,
    Scaling,
    Strategy,
    TuningConfig,
    schemas,
)

ROOT = CONF_DIR.parent


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _schema_classes() -> list[type]:
    """Every dataclass the config is checked against (ranges aside: they have defaults)."""
    found = [Config]
    found += [t for t in typing.get_type_hints(Config).values() if dataclasses.is_dataclass(t)]
    found += [s for options in schemas().values() for s in options.values()]
    return found


def test_default_composition_is_complete() -> None:
    cfg = compose()
    assert cfg.data.source == "synthetic" and cfg.model.name == "hgb_poisson"
    assert cfg.data.true_frequency not in [*cfg.data.categorical, *cfg.data.numeric]
    assert not OmegaConf.missing_keys(cfg)


@pytest.mark.parametrize("schema", _schema_classes(), ids=lambda s: s.__name__)
def test_schemas_state_types_not_values(schema: type) -> None:
    # A value in a dataclass would be a second home for a default the YAML states;
    # only the key that says which schema it is (data.source) has one.
    for f in dataclasses.fields(schema):
        if f.name == "source" and schema in schemas()["data"].values():
            continue
        assert f.default is MISSING and f.default_factory is dataclasses.MISSING, (
            f"{schema.__name__}.{f.name}: put its value in the YAML"
        )


@pytest.mark.parametrize(
    ("group", "option"),
    [(g, o) for g in GROUPS if g not in ("experiment",) for o in _options(g)],
)
def test_every_option_sets_every_key_of_its_schema(group: str, option: str) -> None:
    raw = OmegaConf.load(CONF_DIR / group / f"{option}.yaml")
    # `???` in the YAML: a value the user must give (data.path of data=file).
    required = {f"{group}.{k}" for k in raw if k != "defaults" and OmegaConf.is_missing(raw, k)}
    extra = [f"model={option}"] if group == "tuning" else []
    cfg = compose([f"{group}={option}", *extra])
    assert OmegaConf.missing_keys(cfg) == required, f"{group}/{option}.yaml leaves keys unset"
    if group == "model":
        assert "name" not in raw, "a model's name is its registry key"
    if group == "data":
        assert "source" not in raw, "data.source comes from the schema the option names"


@pytest.mark.parametrize("bundle", _options("experiment"))
def test_experiments_compose(bundle: str) -> None:
    assert not OmegaConf.missing_keys(compose([f"experiment={bundle}"]))


def test_a_required_value_stays_required() -> None:
    assert OmegaConf.missing_keys(compose(["data=file"])) == {"data.path"}


@pytest.mark.parametrize("model", _options("model"))
def test_tuning_space_follows_the_model(model: str) -> None:
    cfg = compose([f"model={model}"])
    assert cfg.model.name == model
    assert OmegaConf.to_container(cfg.tuning) == OmegaConf.to_container(
        OmegaConf.merge(
            OmegaConf.structured(TuningConfig),
            OmegaConf.load(CONF_DIR / "tuning" / f"{model}.yaml"),
        )
    )
    assert set(cfg.tuning.parameters) <= set(cfg.model) - {"name"}


@pytest.mark.parametrize(
    ("overrides", "group", "option"),
    [
        (["data=fremtpl2freq"], "data", "fremtpl2freq"),
        (["data=file", "data.path=x.csv"], "data", "file"),
        (["pipeline=tune"], "pipeline", "tune"),
    ],
)
def test_group_switches_take_the_option_values(
    overrides: list[str], group: str, option: str
) -> None:
    cfg = compose(overrides)
    stated = OmegaConf.load(CONF_DIR / group / f"{option}.yaml")
    for key in stated:
        if key != "defaults" and not OmegaConf.is_missing(stated, key):
            assert cfg[group][key] == stated[key], key


def test_experiment_prod_switches_data_and_pipeline() -> None:
    cfg = compose(["experiment=prod"])
    assert cfg.data == compose(["data=fremtpl2freq"]).data
    assert cfg.pipeline.mode == PipelineMode.tune


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
    with pytest.raises(HydraException) as info:
        compose([override])
    assert named in user_message(info.value)


@pytest.mark.parametrize(
    ("override", "choices"),
    [
        ("pipeline.mode=deploy", PipelineMode),
        ("tuning.objective_type=Max", ObjectiveType),
        ("tuning.strategy=Grid", Strategy),
        ("tuning.parameters.max_leaf_nodes.scaling=Log", Scaling),
        ("tuning.parameters.max_leaf_nodes.type=float", ParameterType),
    ],
)
def test_choice_fields_are_enums_that_list_their_values(override: str, choices: type[Enum]) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose([override])
    message = user_message(info.value)
    assert override.split("=")[1] in message
    assert all(member.value in message for member in choices), message


def test_unknown_option_lists_the_yaml_options_only() -> None:
    with pytest.raises(HydraException) as info:
        compose(["model=glm"])
    message = user_message(info.value)
    assert f"Available options in 'model': {', '.join(_options('model'))}" in message
    assert "schema" not in message


def test_glm_keys_are_not_accepted_by_the_boosting_model() -> None:
    with pytest.raises(ConfigCompositionException):
        compose(["model.alpha=0.1"])


def test_groups_are_discovered() -> None:
    assert set(GROUPS) == {p.name for p in CONF_DIR.iterdir() if p.is_dir()} - {"__pycache__"}


def test_merge_overrides_later_wins_and_group_switch_drops_its_keys() -> None:
    base = ["model.max_leaf_nodes=64", "data.n_rows=1000", "seed=1"]
    merged = merge_overrides(base, ["model=glm_poisson", "model.alpha=0.01", "seed=2"])
    assert merged == ["data.n_rows=1000", "model=glm_poisson", "model.alpha=0.01", "seed=2"]
    assert compose(merged).model.alpha == 0.01


def test_channel_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "channel"
    cfg = write_channel(folder, ["model.max_leaf_nodes=64", "pipeline=tune"])
    assert OmegaConf.load(folder / "config.yaml") == OmegaConf.create(
        OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    )
    assert (folder / VERSION_FILE).read_text().strip() == str(CHANNEL_VERSION)
    again = compose_from_channel(folder)
    assert again.model.max_leaf_nodes == 64 and again.pipeline.mode == PipelineMode.tune
    switched = compose_from_channel(folder, parse_overrides("model=glm_poisson model.alpha=0.01"))
    assert switched.model.name == "glm_poisson" and switched.model.alpha == 0.01
    assert switched.pipeline.mode == PipelineMode.tune


def test_channel_uses_the_uploaded_tree_not_the_packaged_one(tmp_path: Path) -> None:
    folder = tmp_path / "channel"
    write_channel(folder, [])
    first = digest(folder)
    packaged = compose().model.max_leaf_nodes
    model_yaml = folder / "conf" / "model" / "hgb_poisson.yaml"
    text = model_yaml.read_text()
    model_yaml.write_text(text.replace(f"max_leaf_nodes: {packaged}", "max_leaf_nodes: 7"))
    assert compose_from_channel(folder).model.max_leaf_nodes == 7
    assert digest(folder) != first


@pytest.mark.parametrize(
    ("version", "says"),
    [(None, "Upsert the pipeline again"), (CHANNEL_VERSION + 1, "make push-image")],
)
def test_a_channel_of_another_version_says_what_to_do(
    tmp_path: Path, version: int | None, says: str
) -> None:
    folder = tmp_path / "channel"
    write_channel(folder, [])
    if version is None:  # written before channels recorded a version
        (folder / VERSION_FILE).unlink()
    else:
        (folder / VERSION_FILE).write_text(f"{version}\n")
    with pytest.raises(ChannelVersionError, match=says) as info:
        compose_from_channel(folder)
    assert f"version {version or 1}" in str(info.value)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("tuning=glm_poisson", "not a key of model 'hgb_poisson'"),
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

    from pipelines.local.tune import suggest

    cfg = compose(
        [
            "tuning.parameters.max_leaf_nodes.type=categorical",
            "tuning.parameters.max_leaf_nodes.values=[16,64]",
        ]
    )
    trial = optuna.create_study().ask()
    assert suggest(trial, cfg.tuning.parameters)["max_leaf_nodes"] in ("16", "64")


@pytest.mark.parametrize(
    ("override", "named"),
    [("model=glm", "Available options in 'model'"), ("+model.foo=1", "model.foo")],
)
def test_a_config_error_on_the_command_line_exits_2_fast_without_traceback(
    override: str, named: str, tmp_path: Path
) -> None:
    # The process boundary is the point: exit code, stderr, and no step module loaded.
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.local.run", override, f"hydra.run.dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.perf_counter() - start
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and named in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "config.yaml").exists(), "no step ran"
    assert elapsed < 30
