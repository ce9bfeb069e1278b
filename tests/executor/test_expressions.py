"""The definition language: Get, Std:Join, Std:JsonGet, conditions, parameters and the graph."""

from __future__ import annotations

from datetime import timedelta

import pytest

from executor import definition
from executor.errors import DefinitionError, ParameterError, StepFailed
from executor.expressions import Context, condition, parse_path, references, resolve


def ctx(**properties: dict) -> Context:
    return Context(
        parameters={"Threshold": 0.5, "Name": "abc", "Flag": True},
        execution={"PipelineExecutionId": "exec1"},
        properties=properties,
        read_property_file=lambda step, name: {"test": {"dev": 0.25, "list": [1, 2]}},
    )


def test_parse_path_handles_names_indexes_and_quoted_keys() -> None:
    assert parse_path("Steps.A.Outputs['x'].S3Output.S3Uri") == [
        "Steps",
        "A",
        "Outputs",
        "x",
        "S3Output",
        "S3Uri",
    ]
    assert parse_path("Steps.T.TrainingJobSummaries[0].TrainingJobName")[3] == 0
    with pytest.raises(DefinitionError, match="Cannot parse"):
        parse_path("Steps.A.[[")


def test_get_join_and_property_lists_selected_by_name() -> None:
    props = {
        "ProcessingOutputConfig": {
            "Outputs": [
                {"OutputName": "train", "S3Output": {"S3Uri": "s3://b/train"}},
                {"OutputName": "test", "S3Output": {"S3Uri": "s3://b/test"}},
            ]
        }
    }
    value = {
        "Std:Join": {
            "On": "/",
            "Values": [
                {"Get": "Steps.Prep.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"},
                {"Get": "Execution.PipelineExecutionId"},
                {"Get": "Parameters.Threshold"},
                {"Get": "Parameters.Flag"},
            ],
        }
    }
    assert resolve(value, ctx(Prep=props)) == "s3://b/test/exec1/0.5/true"
    with pytest.raises(StepFailed, match="no item named 'nope'"):
        resolve({"Get": "Steps.Prep.ProcessingOutputConfig.Outputs['nope']"}, ctx(Prep=props))
    with pytest.raises(DefinitionError, match="names no parameter"):
        resolve({"Get": "Parameters.Missing"}, ctx())


def test_json_get_reads_the_property_file() -> None:
    get = {
        "Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.Eval.PropertyFiles.Metrics"},
            "Path": "test.list[1]",
        }
    }
    assert resolve(get, ctx()) == 2
    assert list(references(get)) == ["Eval"]


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ({"Type": "Equals", "LeftValue": {"Get": "Parameters.Name"}, "RightValue": "abc"}, True),
        (
            {"Type": "GreaterThan", "LeftValue": 2, "RightValue": {"Get": "Parameters.Threshold"}},
            True,
        ),
        ({"Type": "GreaterThanOrEqualTo", "LeftValue": 0.5, "RightValue": "0.5"}, True),
        ({"Type": "LessThan", "LeftValue": 1, "RightValue": 0.5}, False),
        ({"Type": "LessThanOrEqualTo", "LeftValue": "10", "RightValue": "9"}, False),
        ({"Type": "In", "QueryValue": {"Get": "Parameters.Name"}, "Values": ["x", "abc"]}, True),
        ({"Type": "Not", "Condition": {"Type": "Equals", "LeftValue": 1, "RightValue": 2}}, True),
        (
            {
                "Type": "Or",
                "Conditions": [
                    {"Type": "Equals", "LeftValue": 1, "RightValue": 2},
                    {"Type": "Equals", "LeftValue": "a", "RightValue": "a"},
                ],
            },
            True,
        ),
    ],
)
def test_every_condition_type(cond: dict, expected: bool) -> None:
    assert condition(cond, ctx()) is expected


def test_parameters_as_the_service_checks_them() -> None:
    spec = {
        "Parameters": [
            {"Name": "S", "Type": "String", "DefaultValue": "d"},
            {"Name": "I", "Type": "Integer", "DefaultValue": 3},
            {"Name": "F", "Type": "Float", "DefaultValue": 1.0},
            {"Name": "B", "Type": "Boolean", "DefaultValue": False},
            {"Name": "E", "Type": "String", "DefaultValue": "a", "EnumValues": ["a", "b"]},
        ],
        "Steps": [],
    }
    assert definition.parameters(spec, {"I": "7", "F": "0.25", "B": "true", "E": "b"}) == {
        "S": "d",
        "I": 7,
        "F": 0.25,
        "B": True,
        "E": "b",
    }
    with pytest.raises(ParameterError, match="Unknown pipeline parameter"):
        definition.parameters(spec, {"Nope": "1"})
    with pytest.raises(ParameterError, match="S= is empty"):
        definition.parameters(spec, {"S": ""})
    with pytest.raises(ParameterError, match="not one of its allowed values"):
        definition.parameters(spec, {"E": "c"})
    with pytest.raises(ParameterError, match="not a valid Integer"):
        definition.parameters(spec, {"I": "1.5"})
    with pytest.raises(ParameterError, match="at most 1024"):
        definition.parameters(spec, {"S": "x" * 1025})


def test_graph_dependencies_branches_and_unsupported_types() -> None:
    spec = {
        "Steps": [
            {"Name": "A", "Type": "Processing", "Arguments": {}},
            {
                "Name": "B",
                "Type": "Training",
                "Arguments": {"X": {"Get": "Steps.A.ProcessingJobArn"}},
            },
            {"Name": "C", "Type": "Processing", "Arguments": {}, "DependsOn": ["A"]},
            {
                "Name": "G",
                "Type": "Condition",
                "Arguments": {
                    "Conditions": [
                        {
                            "Type": "Equals",
                            "LeftValue": {"Get": "Steps.B.TrainingJobStatus"},
                            "RightValue": "Completed",
                        }
                    ],
                    "IfSteps": [{"Name": "Ok", "Type": "Fail", "Arguments": {}}],
                    "ElseSteps": [],
                },
            },
        ]
    }
    graph = definition.steps(spec)
    assert graph["B"].depends_on == {"A"} and graph["C"].depends_on == {"A"}
    assert graph["G"].depends_on == {"B"} and graph["Ok"].branch == ("G", "If")
    spec["Steps"].append({"Name": "T", "Type": "Transform", "Arguments": {}})
    with pytest.raises(DefinitionError, match="'Transform', which is not supported locally"):
        definition.steps(spec)


def test_conditions_outside_the_language_are_refused_before_anything_runs() -> None:
    """There is no And (a step's list of conditions is their conjunction); a Not needs one."""
    equals = {"Type": "Equals", "LeftValue": 1, "RightValue": 1}

    def gate(*conditions: dict) -> dict:
        step = {"Name": "Gate", "Type": "Condition", "Arguments": {"Conditions": list(conditions)}}
        return {"Steps": [step]}

    assert set(definition.steps(gate(equals, {"Type": "Not", "Condition": equals}))) == {"Gate"}
    with pytest.raises(DefinitionError, match=r"Step 'Gate'.*'And' is not one of .* conjunction"):
        definition.steps(gate({"Type": "And", "Conditions": [equals, equals]}))
    with pytest.raises(DefinitionError, match="'Nand' is not one of"):
        definition.steps(gate({"Type": "Or", "Conditions": [{"Type": "Nand"}]}))
    with pytest.raises(DefinitionError, match="a Not condition needs a 'Condition'"):
        definition.steps(gate({"Type": "Not"}))


@pytest.mark.parametrize(
    ("text", "days", "seconds"),
    [
        ("P30D", 30, 0),
        ("p30d", 30, 0),
        ("30d", 30, 0),
        ("5y", 5 * 365, 0),
        ("T16m", 0, 960),
        ("30dT5h", 30, 5 * 3600),
        ("P4DT12H", 4, 43200),
    ],
)
def test_cache_expire_after_reads_the_forms_the_sdk_documents(
    text: str, days: int, seconds: int
) -> None:
    from executor.cache import expire_after

    assert expire_after(text) == timedelta(days=days, seconds=seconds)


@pytest.mark.parametrize("text", ["", "P", "PT", "30dT", "30 days", "P1.5D"])
def test_cache_expire_after_refuses_other_text(text: str) -> None:
    from executor.cache import expire_after

    with pytest.raises(DefinitionError, match="not an ISO 8601 duration"):
        expire_after(text)
