"""Reading the command line as Hydra's ``@hydra.main`` will, before it runs."""

from __future__ import annotations

import pytest
from hydra.errors import HydraException

from pipelines.local.hydra_adapter import read_command_line, sweep_jobs


@pytest.mark.parametrize(
    ("argv", "multirun", "informational", "other_config"),
    [
        (["model=constant"], False, False, False),
        (["-m", "seed=1,2"], True, False, False),
        (["--multirun", "seed=1,2"], True, False, False),
        (["seed=1,2", "hydra.mode=MULTIRUN"], True, False, False),
        (["--cfg", "job", "seed=1"], False, True, False),
        (["--help"], False, True, False),
        (["--info", "config"], False, True, False),
        (["--config-name", "other"], False, False, True),
        (["-cp", "elsewhere"], False, False, True),
    ],
)
def test_the_command_line_as_hydra_reads_it(
    argv: list[str], multirun: bool, informational: bool, other_config: bool
) -> None:
    command = read_command_line(argv)
    assert command.multirun is multirun
    assert command.informational is informational
    assert command.other_config is other_config
    assert all(o in argv for o in command.overrides) and "-m" not in command.overrides


@pytest.mark.parametrize(
    ("overrides", "jobs"),
    [
        ([], [[]]),
        (
            ["model=constant,glm_poisson", "data.n_rows=5000"],
            [
                ["model=constant", "data.n_rows=5000"],
                ["model=glm_poisson", "data.n_rows=5000"],
            ],
        ),
        (
            ["seed=1,2", "split.seed=3,4"],
            [
                ["seed=1", "split.seed=3"],
                ["seed=1", "split.seed=4"],
                ["seed=2", "split.seed=3"],
                ["seed=2", "split.seed=4"],
            ],
        ),
        (["seed=range(1,4)"], [["seed=1"], ["seed=2"], ["seed=3"]]),
        (["seed=1,2", "model=constant", "seed=7"], [["seed=7", "model=constant"]]),
        (["+model.extra=1,2"], [["+model.extra=1"], ["+model.extra=2"]]),
    ],
)
def test_a_sweep_expands_to_hydras_jobs_in_its_order(
    overrides: list[str], jobs: list[list[str]]
) -> None:
    assert sweep_jobs(overrides) == jobs


@pytest.mark.parametrize("override", ["seed=interval(0,1)", "seed=[1,"])
def test_a_sweep_that_cannot_be_listed_is_an_error(override: str) -> None:
    with pytest.raises(HydraException):
        sweep_jobs([override])
