"""The scoring path shared by the server and score-local, in-process."""

from __future__ import annotations

import io
import json

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


# ------------------------------------------------- one row in, one prediction out


def csv_lines(rows: pd.DataFrame, header: bool = True) -> list[str]:
    return rows.to_csv(index=False, header=header).splitlines()


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize(
    ("row", "change", "fields"),
    [
        (1, lambda text: text + ",7", 11),  # one extra field: pandas took it as the index
        (2, lambda text: text + ",7,8", 12),
        (4, lambda text: text.rsplit(",", 1)[0], 9),  # one field short
    ],
)
def test_csv_rows_of_another_width_are_refused_naming_the_line(
    scorer: Scorer, rows: pd.DataFrame, header: bool, row: int, change: object, fields: int
) -> None:
    lines = csv_lines(rows, header)
    line = row + 1 + header  # the data row's line in the body
    lines[line - 1] = change(lines[line - 1])  # type: ignore[operator]
    with pytest.raises(RequestError, match=f"Line {line} of the CSV body has {fields} fields"):
        score_csv(scorer, "\n".join(lines) + "\n")


def test_csv_every_row_with_an_extra_field_is_refused(scorer: Scorer, rows: pd.DataFrame) -> None:
    """The reviewed case: each data row one field longer than the header."""
    lines = csv_lines(rows)
    body = "\n".join([lines[0], *(line + ",7" for line in lines[1:])]) + "\n"
    with pytest.raises(
        RequestError, match="Line 2 of the CSV body has 11 fields where line 1 has 10"
    ):
        score_csv(scorer, body)


def test_csv_quoted_commas_and_blank_lines_keep_one_prediction_per_row(
    scorer: Scorer, rows: pd.DataFrame
) -> None:
    odd = rows.assign(Region=[f"R,{i}" for i in range(len(rows))])  # quoted by to_csv
    text = odd.to_csv(index=False).replace("\n", "\n\n", 2)
    assert len(score_csv(scorer, text)) == len(rows)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[{}, {}]", "Missing feature columns 'Area', 'VehBrand'"),
        ("{}", "Missing feature columns"),
    ],
)
def test_json_records_without_columns_are_refused(scorer: Scorer, body: str, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        predict(scorer, read_body(body.encode(), "application/json", scorer))


def test_json_empty_record_among_others_is_a_row_with_missing_values(
    scorer: Scorer, rows: pd.DataFrame
) -> None:
    records = json.loads(rows.to_json(orient="records"))
    body = json.dumps([records[0], {}, records[1]]).encode()
    with pytest.raises(RequestError, match="no missing values: 1 row breaks it \\(first: row 2"):
        predict(scorer, read_body(body, "application/json", scorer))


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("Area", [1, 2], "of type list"),
        ("VehBrand", {"brand": "B1"}, "of type dict"),
        ("DrivAge", [40], "of type list"),
        ("Density", {"a": 1}, "of type dict"),
        ("Exposure", [0.5], "of type list"),
        ("DrivAge", int("9" * 401), "9999"),  # too large for a float: not finite
        ("VehPower", -int("9" * 401), "-9999"),
        ("Region", True, "True"),
    ],
)
def test_json_values_that_are_not_text_or_numbers_name_the_column(
    scorer: Scorer, rows: pd.DataFrame, column: str, value: object, shown: str
) -> None:
    records = json.loads(rows.to_json(orient="records"))
    records[1][column] = value
    with pytest.raises(RequestError) as err:
        predict(scorer, read_body(json.dumps(records).encode(), "application/json", scorer))
    message = str(err.value)
    assert f"Column '{column}'" in message and "row 2" in message and shown in message, message
    assert len(message) < 300, message


def test_json_numbers_as_categories_are_text_as_in_csv(scorer: Scorer, rows: pd.DataFrame) -> None:
    records = json.loads(rows.assign(VehBrand="7").to_json(orient="records"))
    as_text = predict(scorer, read_body(json.dumps(records).encode(), "application/json", scorer))
    for record in records:
        record["VehBrand"] = 7
    as_number = predict(scorer, read_body(json.dumps(records).encode(), "application/json", scorer))
    pd.testing.assert_frame_equal(as_text, as_number)


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_deeply_nested_json_is_a_bad_request(scorer: Scorer, depth: int) -> None:
    body = b"[" * depth + b"]" * depth
    with pytest.raises(RequestError, match="nested too deeply"):
        read_body(body, "application/json", scorer)
    record = b'[{"Area": ' + b"[" * depth + b"]" * depth + b"}]"
    with pytest.raises(RequestError, match="nested too deeply"):
        read_body(record, "application/json", scorer)


def test_csv_huge_integer_is_not_finite(scorer: Scorer, rows: pd.DataFrame) -> None:
    text = rows.assign(Density="9" * 401).to_csv(index=False)
    with pytest.raises(RequestError, match="Column 'Density' must have finite numbers"):
        score_csv(scorer, text)


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("column", "make", "words"),
    [
        ("DrivAge", lambda n: pd.Series(pd.date_range("2020-01-01", periods=n)), "datetime64"),
        ("Area", lambda n: pd.Series(pd.date_range("2020-01-01", periods=n)), "datetime64"),
        ("VehAge", lambda n: pd.Series(pd.to_timedelta(range(n), unit="D")), "timedelta64"),
        ("Region", lambda n: pd.Series([[1, 2]] * n), "of type ndarray"),
        ("VehGas", lambda n: pd.Series([b"Diesel"] * n), "of type bytes"),
        ("Density", lambda n: pd.Series([{"a": 1.0}] * n), "of type dict"),
    ],
)
def test_parquet_columns_that_are_not_text_or_numbers_name_the_column(
    scorer: Scorer, rows: pd.DataFrame, column: str, make: object, words: str
) -> None:
    bad = rows.assign(**{column: make(len(rows)).to_numpy()})  # type: ignore[operator]
    with pytest.raises(RequestError) as err:
        predict(scorer, read_body(parquet(bad), "application/x-parquet", scorer))
    assert f"Column '{column}'" in str(err.value) and words in str(err.value), str(err.value)


def test_parquet_categories_and_decimals_are_scored(scorer: Scorer, rows: pd.DataFrame) -> None:
    from decimal import Decimal

    typed = rows.assign(
        Area=rows["Area"].astype("category"),
        Density=[Decimal(str(v)) for v in rows["Density"]],
    )
    got = predict(scorer, read_body(parquet(typed), "application/x-parquet", scorer))
    np.testing.assert_allclose(got["frequency"], scorer.model.predict(rows), rtol=1e-12)


def test_json_record_naming_a_column_twice_is_refused(scorer: Scorer, rows: pd.DataFrame) -> None:
    """JSON keeps the last of two equal keys: the row would be scored with one of them."""
    record = rows.head(1).to_json(orient="records")[2:-2]  # the record's pairs
    body = ('[{"Area": "A", ' + record + "}]").encode()
    with pytest.raises(RequestError, match="names column 'Area' twice"):
        read_body(body, "application/json", scorer)


def test_parquet_under_a_payload_limit_holds_no_more_than_csv_could(
    scorer: Scorer, rows: pd.DataFrame
) -> None:
    """Without a limit (score-local) any file is read; under one, rows and text are bounded."""
    many = parquet(pd.concat([rows] * 20_000, ignore_index=True))  # 100,000 rows
    assert len(read_body(many, "application/x-parquet", scorer)) == 100_000
    assert len(read_body(many, "application/x-parquet", scorer, limit=2_000_000)) == 100_000
    with pytest.raises(RequestError, match="100000 rows of 10 columns") as err:
        read_body(many, "application/x-parquet", scorer, limit=1_000_000)
    assert err.value.status == 413
    long_text = parquet(rows.assign(VehBrand="B" * 300_000))  # 1.5 MB of text, in a few KB
    assert len(read_body(long_text, "application/x-parquet", scorer, limit=2_000_000)) == 5
    with pytest.raises(RequestError, match="1500000 bytes of text"):
        read_body(long_text, "application/x-parquet", scorer, limit=1_000_000)
