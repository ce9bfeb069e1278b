"""The scoring path shared by the server and score-local, in-process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steps.score import (
    RequestError,
    Scorer,
    predict,
    read_body,
    render,
    response_type,
    wants_csv_header,
)
from tests.serve.support import Trained


@pytest.fixture(scope="module")
def rows(trained: Trained, scorer: Scorer) -> pd.DataFrame:
    return trained.test[[*scorer.features, "Exposure"]].head(5).reset_index(drop=True)


def score_csv(scorer: Scorer, text: str) -> pd.DataFrame:
    return predict(scorer, read_body(text.encode(), "text/csv; charset=utf-8", scorer))


def test_header_only_csv_scores_no_rows(scorer: Scorer) -> None:
    """A batch transform mini-batch may hold only the file's header line."""
    got = score_csv(scorer, ",".join(scorer.features) + "\n")
    assert len(got) == 0 and list(got.columns) == ["frequency"]


def test_headerless_rows_with_and_without_exposure(scorer: Scorer, rows: pd.DataFrame) -> None:
    plain = score_csv(scorer, rows[scorer.features].to_csv(index=False, header=False))
    assert list(plain.columns) == ["frequency"]
    np.testing.assert_allclose(plain["frequency"], scorer.model.predict(rows))
    exposed = score_csv(scorer, rows.to_csv(index=False, header=False))
    np.testing.assert_allclose(exposed["expected_claims"], plain["frequency"] * rows["Exposure"])


def test_categories_that_look_like_numbers_stay_text(scorer: Scorer, rows: pd.DataFrame) -> None:
    """'01' and 1 are different categories, as in training (read as text)."""
    text = rows.assign(VehBrand="01").to_csv(index=False)
    frame = read_body(text.encode(), "text/csv", scorer)
    assert frame["VehBrand"].tolist() == ["01"] * len(rows)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("Area,Area,VehPower\nC,C,1\n", "text/csv", "names column 'Area' twice"),
        ("C,B1\n", "text/csv", "no header and 2 columns"),
        ('[{"Area": "C"}, 3]', "application/json", "list of records"),
        ('[{"VehPower": true}]', "application/json", "Missing feature columns"),
        (b"\xff\xfe,1\n", "text/csv", "not UTF-8"),
    ],
)
def test_unreadable_bodies(
    scorer: Scorer, body: str | bytes, content_type: str, message: str
) -> None:
    raw = body if isinstance(body, bytes) else body.encode()
    with pytest.raises(RequestError, match=message) as err:
        predict(scorer, read_body(raw, content_type, scorer))
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("DrivAge", True, "numeric values"),
        ("DrivAge", "forty", "numeric values"),
        ("Density", float("inf"), "finite numbers"),
        ("VehBrand", None, "no missing values"),
        ("Exposure", 0.0, "exposure > 0"),
    ],
)
def test_feature_rules_name_the_column_and_row(
    scorer: Scorer, rows: pd.DataFrame, column: str, value: object, rule: str
) -> None:
    bad = rows.astype(object)
    bad.loc[2, column] = value
    with pytest.raises(RequestError) as err:
        predict(scorer, bad)
    assert f"Column '{column}' must have {rule}: 1 row breaks it (first: row 3" in str(err.value)


def test_response_types_and_rendering(scorer: Scorer, rows: pd.DataFrame) -> None:
    assert response_type(None, "text/csv") == "text/csv"
    assert response_type("*/*", "application/x-parquet") == "application/json"
    assert response_type("text/*", "application/json") == "text/csv"
    assert response_type("application/xml, application/json;q=0.5", "text/csv") == (
        "application/json"
    )
    assert response_type("application/xml", "text/csv") is None
    assert wants_csv_header("text/csv; header=present")
    assert not wants_csv_header("text/csv")
    got = predict(scorer, rows)
    assert render(got, "text/csv").decode().count("\n") == len(rows)
    assert render(got, "text/csv", csv_header=True).decode().startswith("frequency,")
    assert render(got, "application/json").startswith(b'{"predictions":[{"frequency":')
