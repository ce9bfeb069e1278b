"""Read ``template.yaml`` into plain data, short-form intrinsic functions included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra import TEMPLATE_PATH


class _TemplateLoader(yaml.SafeLoader):
    """A safe YAML loader that turns ``!Ref``/``!Sub``/... into their long forms."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as a dict, in the JSON form CloudFormation also accepts."""
    return yaml.load(Path(path).read_text(), Loader=_TemplateLoader)


def parameter_defaults(template: dict[str, Any]) -> dict[str, str | None]:
    """The template's parameters and their defaults as strings (``None``: no default)."""
    return {
        name: None if "Default" not in spec else str(spec["Default"])
        for name, spec in template.get("Parameters", {}).items()
    }
