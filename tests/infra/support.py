"""Helpers for the infra tests: the template reduced to what moto can deploy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_NAME = "claim-frequency-infra-test"

# moto's CloudFormation has no handler for these resource types: it would skip
# them with a warning, and outputs reading their attributes would fail. The
# local deploy leaves them out (and the outputs that read them); cfn-lint,
# checkov and the static tests check them in the full template.
UNSUPPORTED_BY_MOTO: dict[str, str] = {
    "AWS::SageMaker::ModelPackageGroup": "no CloudFormation handler in moto",
    "AWS::S3::BucketPolicy": "no CloudFormation handler in moto",
}


def _references(value: Any) -> set[str]:
    """Logical IDs that ``value`` refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                found |= {ref.split(".")[0] for ref in _sub_names(text)}
                if isinstance(inner, list):
                    found |= _references(inner[1])
            else:
                found |= _references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _references(inner)
    return found


def _sub_names(text: str) -> list[str]:
    names, rest = [], text
    while "${" in rest:
        start = rest.index("${") + 2
        end = rest.index("}", start)
        if not rest[start:].startswith("!"):
            names.append(rest[start:end])
        rest = rest[end + 1 :]
    return names


def strip_for_moto(template: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The template without the resource types moto cannot deploy; also their logical IDs."""
    stripped = json.loads(json.dumps(template))
    removed = {
        name
        for name, resource in stripped["Resources"].items()
        if resource["Type"] in UNSUPPORTED_BY_MOTO
    }
    for name in removed:
        del stripped["Resources"][name]
    stripped["Outputs"] = {
        key: output
        for key, output in stripped["Outputs"].items()
        if not _references(output["Value"]) & removed
    }
    for name, resource in stripped["Resources"].items():
        if resource["Type"] == "AWS::KMS::Key":
            # moto's KMS key handler reads tags in the KMS API's TagKey/TagValue
            # form rather than CloudFormation's Key/Value, and fails on the latter.
            resource["Properties"].pop("Tags", None)
        dangling = _references(resource) & removed
        assert not dangling, f"{name} still refers to {dangling}"
    return stripped, removed
