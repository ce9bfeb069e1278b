"""Hyperparameters.json -> typed Hydra overrides (in-process, no jobs run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conf import compose
from conf.errors import ConfigError
from container import hyperparameters as hp


@pytest.fixture(scope="module")
def cfg():
    return compose([])


def test_decode_unwraps_json_encoded_strings_only() -> None:
    assert hp.decode('"model=glm_poisson"') == "model=glm_poisson"
    assert hp.decode("model=glm_poisson") == "model=glm_poisson"
    assert hp.decode("16") == "16"  # a JSON number stays the text it was
    assert hp.decode('"0.5"') == "0.5"
    assert hp.decode(16) == "16"


def test_read_and_split_drop_platform_keys(tmp_path: Path) -> None:
    path = tmp_path / "hyperparameters.json"
    path.write_text(
        json.dumps(
            {
                "overrides": '"data.n_rows=3000 model.max_iter=50"',
                "model.max_leaf_nodes": '"16"',
                "_tuning_objective_metric": "validation:poisson_deviance",
                "sagemaker_container_log_level": "20",
            }
        )
    )
    text, keyed = hp.split(hp.read(path))
    assert text == "data.n_rows=3000 model.max_iter=50"
    assert keyed == {"model.max_leaf_nodes": "16"}
    assert hp.read(tmp_path / "absent.json") == {}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_read_rejects_a_bad_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "hyperparameters.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="hyperparameters file"):
        hp.read(path)


@pytest.mark.parametrize(
    ("key", "value", "override", "typed"),
    [
        ("model.max_leaf_nodes", "16", "model.max_leaf_nodes=16", 16),
        ("model.max_leaf_nodes", "16.0", "model.max_leaf_nodes=16", 16),
        ("model.learning_rate", "0.05", "model.learning_rate=0.05", 0.05),
        ("model.l2_regularization", "1e-3", "model.l2_regularization=0.001", 0.001),
        ("model.early_stopping", "False", "model.early_stopping=false", False),
        ("data.n_rows", "3000", "data.n_rows=3000", 3000),
        ("sagemaker.prefix", "a, b [c]", "sagemaker.prefix='a, b [c]'", "a, b [c]"),
        ("sagemaker.prefix", "it's", "sagemaker.prefix='it\\'s'", "it's"),
        ("sagemaker.prefix", "1e-3", "sagemaker.prefix='1e-3'", "1e-3"),
        ("sagemaker.region", "eu-west-1", "sagemaker.region='eu-west-1'", "eu-west-1"),
        ("data.exposure", "null", "data.exposure=null", None),
    ],
)
def test_typed_override_composes_to_the_typed_value(
    cfg, key: str, value: str, override: str, typed
) -> None:
    assert hp.typed_override(cfg, key, value) == override
    composed = compose([override])
    node = composed
    for part in key.split("."):
        node = node[part]
    assert node == typed
    assert type(node) is type(typed)


def test_unknown_key_names_the_valid_keys(cfg) -> None:
    with pytest.raises(ConfigError) as err:
        hp.typed_override(cfg, "model.max_leaf_node", "16")
    message = str(err.value)
    assert "Unknown hyperparameter 'model.max_leaf_node'" in message
    assert "max_leaf_nodes" in message and "learning_rate" in message


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("model.max_leaf_nodes", "16.5", "is not an integer"),
        ("model.learning_rate", "fast", "is not a number"),
        ("model.early_stopping", "maybe", "is not a boolean"),
        ("model", "glm_poisson", "names a config section"),
        ("no such key", "1", "is not a config key"),
        ("nothere.key", "1", "Unknown hyperparameter"),
    ],
)
def test_bad_values_and_keys_are_user_errors(cfg, key: str, value: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        hp.typed_override(cfg, key, value)


def test_input_data_uri_becomes_file_overrides_before_the_string() -> None:
    text, keyed = hp.split(
        {"input_data_uri": "s3://claims/in/policies.csv", "overrides": "data.format=csv"}
    )
    assert text == "data=file data.path=s3://claims/in/policies.csv data.format=csv"
    assert keyed == {}
    assert hp.split({"input_data_uri": "", "overrides": "seed=1"}) == ("seed=1", {})
    cfg = compose(text.split())
    assert cfg.data.source == "file" and cfg.data.path == "s3://claims/in/policies.csv"
