"""Scoring new policies: read a request body, check it with the training rules, predict.

One code path serves the model server (``container/serve.py``) and
``make score-local``: ``read_body`` turns CSV, JSON records or Parquet into a
frame, ``predict`` checks the model's feature columns with the rules training
data must meet (no target needed) and returns the predicted frequency per row
and, where exposure is given, the expected claims; ``render`` writes JSON or CSV.

Every problem with a request is a ``RequestError``: one line that names the
column, with the HTTP status the server answers with.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from conf.contract import (
    CONFIG_FILE,
    CSV_TYPE,
    JSON_TYPE,
    REQUEST_CONTENT_TYPES,
    RESPONSE_CONTENT_TYPES,
)
from conf.errors import DataError
from steps.model import FrequencyModel
from steps.train import load_model

FREQUENCY = "frequency"
EXPECTED_CLAIMS = "expected_claims"
# The exposure column of requests when the model's training config is not beside it.
DEFAULT_EXPOSURE = "Exposure"


class RequestError(DataError):
    """A request that cannot be scored; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(" ".join(message.split()))
        self.status = status


@dataclass(frozen=True)
class Scorer:
    """A loaded model and the column names requests use."""

    model: FrequencyModel
    exposure: str = DEFAULT_EXPOSURE

    @property
    def features(self) -> list[str]:
        """The feature columns, in the order a CSV body without a header gives them."""
        return [*self.model.categorical, *self.model.numeric]

    def describe(self) -> str:
        """One line: the model and the columns it reads."""
        return (
            f"model {self.model.name}; CSV columns without a header: "
            f"{','.join(self.features)}[,{self.exposure}]"
        )


def load_scorer(model_dir: Path) -> Scorer:
    """The model in ``model_dir``, with the exposure column its training config names.

    The config is the ``config.yaml`` beside the model (a training job's
    model.tar.gz) or one folder up (a local run); without it the exposure
    column is ``Exposure``.
    """
    model_dir = Path(model_dir)
    model = load_model(model_dir)
    exposure = DEFAULT_EXPOSURE
    for path in (model_dir / CONFIG_FILE, model_dir.parent / CONFIG_FILE):
        if path.is_file():
            try:
                data = (yaml.safe_load(path.read_text()) or {}).get("data") or {}
            except (yaml.YAMLError, OSError, AttributeError) as exc:
                raise DataError(f"Cannot read the model's config '{path}': {exc}") from exc
            exposure = data.get("exposure") or DEFAULT_EXPOSURE
            break
    return Scorer(model=model, exposure=str(exposure))


# ----------------------------------------------------------------------------- reading


def media_type(content_type: str | None) -> str:
    """``text/csv; charset=utf-8`` -> ``text/csv``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def read_body(
    body: bytes, content_type: str | None, scorer: Scorer, limit: int | None = None
) -> pd.DataFrame:
    """The rows of a request body of one of ``REQUEST_CONTENT_TYPES``.

    ``limit`` is the payload limit in bytes: a Parquet body, compressed, may hold no more
    than a CSV body of that size could (``_read_parquet``); None: no limit.
    """
    kind = media_type(content_type)
    if kind not in REQUEST_CONTENT_TYPES:
        shown = content_type or "(none)"
        raise RequestError(
            f"Content-Type {shown} is not supported: send {', '.join(REQUEST_CONTENT_TYPES)}.",
            status=415,
        )
    if not body or body.isspace():
        raise RequestError(f"The request body is empty: send the policies to score as {kind}.")
    if kind == CSV_TYPE:
        return _read_csv(body, scorer)
    if kind == JSON_TYPE:
        return _read_json(body)
    return _read_parquet(body, limit)


def _read_csv(body: bytes, scorer: Scorer) -> pd.DataFrame:
    """CSV with a header row (it names model features) or without (features in order).

    Every row must have as many fields as the first one (the header, or the first row
    of a body without one): one row in is one prediction out.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(f"The CSV body is not UTF-8 text ({exc}).") from None
    first, rows = _csv_shape(text)
    known = {*scorer.features, scorer.exposure}
    text_columns = set(scorer.model.categorical)
    try:
        if any(name in known for name in first):
            duplicated = sorted({name for name in first if first.count(name) > 1})
            if duplicated:
                raise RequestError(f"The CSV header names column '{duplicated[0]}' twice.")
            dtype = {name: str for name in first if name in text_columns}
            frame = pd.read_csv(io.StringIO(text), dtype=dtype, low_memory=False, index_col=False)
            rows -= 1  # the header
        else:
            n_features = len(scorer.features)
            if len(first) not in (n_features, n_features + 1):
                raise RequestError(
                    f"The CSV body has no header and {len(first)} columns in its first row; "
                    f"without a header send the model's {n_features} features in this order, "
                    f"optionally followed by exposure: {','.join(scorer.features)}"
                    f"[,{scorer.exposure}]."
                )
            names = [*scorer.features, scorer.exposure][: len(first)]
            dtype = {name: str for name in names if name in text_columns}
            frame = pd.read_csv(
                io.StringIO(text),
                header=None,
                names=names,
                dtype=dtype,
                low_memory=False,
                index_col=False,
            )
    except (pd.errors.ParserError, ValueError, OverflowError) as exc:
        raise RequestError(f"Could not read the body as CSV: {_one_line(exc)}") from None
    if len(frame) != rows:
        raise RequestError(
            f"Could not read the body as CSV: it has {rows} rows, of which {len(frame)} could "
            "be read (check its quoting)."
        )
    return frame


def _csv_shape(text: str) -> tuple[list[str], int]:
    """The first row and the number of rows; a ``RequestError`` naming a row of another width.

    Blank lines (and lines of spaces only) are not rows, as in pandas.
    """
    reader = csv.reader(io.StringIO(text))
    first: list[str] | None = None
    first_line = rows = 0
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            rows += 1
            if first is None:
                first, first_line = row, reader.line_num
            elif len(row) != len(first):
                raise RequestError(
                    f"Line {reader.line_num} of the CSV body has {len(row)} fields where line "
                    f"{first_line} has {len(first)}: every row needs one value per column "
                    "(quote values that hold commas)."
                )
    except csv.Error as exc:
        raise RequestError(
            f"Could not read the body as CSV: line {reader.line_num}: {_one_line(exc)}"
        ) from None
    return first or [], rows


def _read_json(body: bytes) -> pd.DataFrame:
    """A list of records (objects keyed by column name), or a single record."""
    try:
        payload = json.loads(body, object_pairs_hook=_record)
    except RecursionError:
        raise RequestError("The JSON body is nested too deeply: send a list of records.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"The body is not valid JSON: {_one_line(exc)}") from None
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list) or not all(isinstance(row, dict) for row in payload):
        raise RequestError(
            'A JSON body must be a list of records keyed by column name, e.g. [{"Area": "C", '
            '"VehPower": 6, ...}].'
        )
    # One row per record, records without any key included ([{}, {}] is two rows).
    return pd.DataFrame.from_records(payload, nrows=len(payload)).reindex(
        pd.RangeIndex(len(payload))
    )


def _record(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object; one that names a key twice is refused (JSON keeps the last silently)."""
    record: dict[str, object] = {}
    for key, value in pairs:
        if key in record:
            raise RequestError(f"A JSON record names column '{key}' twice.")
        record[key] = value
    return record


def _read_parquet(body: bytes, limit: int | None) -> pd.DataFrame:
    """A Parquet file, refused (413) if it expands past what ``limit`` bytes of CSV hold.

    Compression and dictionaries let a small file hold millions of rows, or one long
    text repeated on every row: under a limit, a file may hold at most ``limit / 2``
    values (rows times columns, as "0," per value in CSV) and ``limit`` bytes of text.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def too_large(what: str) -> RequestError:
        return RequestError(
            f"The Parquet body holds {what}, more than a CSV body within the payload limit of "
            f"{limit} bytes could: send fewer rows per request.",
            413,
        )

    try:
        schema = pq.read_schema(io.BytesIO(body))
        texts = [
            field.name
            for field in schema
            if pa.types.is_string(field.type)
            or pa.types.is_large_string(field.type)
            or pa.types.is_binary(field.type)
            or pa.types.is_large_binary(field.type)
        ]
        source = pq.ParquetFile(io.BytesIO(body), read_dictionary=texts)
        rows, columns = source.metadata.num_rows, source.metadata.num_columns
        if limit is not None and rows * columns > limit // 2:
            raise too_large(f"{rows} rows of {columns} columns ({rows * columns} values)")
        table = source.read()
        if limit is not None:
            text_bytes = 0
            for name in texts:  # read as dictionaries: the repeated texts are not copied
                for chunk in table.column(name).chunks:
                    lengths = pc.binary_length(chunk.dictionary)
                    text_bytes += pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
            if text_bytes > limit:
                raise too_large(f"{text_bytes} bytes of text")
        return table.to_pandas()
    except RequestError:
        raise
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise RequestError(f"Could not read the body as Parquet: {_one_line(exc)}") from None


# ---------------------------------------------------------------------- checks, predict


def predict(scorer: Scorer, frame: pd.DataFrame) -> pd.DataFrame:
    """Predicted frequency per row and, where exposure is given, the expected claims.

    The model's feature columns are checked with the rules of training data
    (present, numeric and finite, no missing values; exposure > 0); other
    columns are ignored. Categories never seen in training are scored as
    the model scores them at evaluation.
    """
    if len(frame) == 0:
        return pd.DataFrame({FREQUENCY: pd.Series(dtype=float)})
    checked = check_features(scorer, frame)
    frequency = scorer.model.predict(checked)
    out = pd.DataFrame({FREQUENCY: frequency})
    if scorer.exposure in frame.columns:
        exposure = _numeric(frame[scorer.exposure], scorer.exposure)
        bad = ~(exposure > 0)
        if bad.any():
            raise RequestError(
                _rule(scorer.exposure, "exposure > 0", bad, frame[scorer.exposure].to_numpy())
            )
        out[EXPECTED_CLAIMS] = frequency * exposure
    return out


def check_features(scorer: Scorer, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's feature columns of ``frame``, numbers as floats; a ``RequestError`` if not."""
    duplicated = frame.columns[frame.columns.duplicated()]
    if len(duplicated):
        raise RequestError(f"The request names column '{duplicated[0]}' twice.")
    missing = [name for name in scorer.features if name not in frame.columns]
    if missing:
        listed = ", ".join(f"'{name}'" for name in missing)
        raise RequestError(
            f"Missing feature column{'s' if len(missing) > 1 else ''} {listed}: the model needs "
            f"{', '.join(scorer.features)} (and optionally {scorer.exposure})."
        )
    out = pd.DataFrame(index=frame.index)
    for name in scorer.model.categorical:
        out[name] = _text(frame[name], name)
    for name in scorer.model.numeric:
        out[name] = _numeric(frame[name], name)
    return out


# Python types a value of a request may have (NumPy's numbers included); anything else
# (a list, a record, a date, bytes) is refused, naming the column.
_NUMBER_TYPES = (int, float, Decimal, np.integer, np.floating)
_PLAIN_TYPES = (str, bool, np.bool_, *_NUMBER_TYPES)
# What pandas infers for a column of such values only (checked value by value otherwise).
_PLAIN_KINDS = {"string", "integer", "floating", "mixed-integer-float", "decimal", "boolean"}


def _plain(values: pd.Series, name: str, expected: str) -> tuple[pd.Series, str]:
    """``values`` (categories as objects) and pandas' name for what they hold.

    A ``RequestError`` names the column if it holds anything but text and numbers.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    kind = values.dtype.kind
    if kind not in "biufO":
        raise RequestError(f"Column '{name}' must have {expected}: it holds {values.dtype} values.")
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "O" and inferred not in _PLAIN_KINDS | {"empty"}:
        odd = values.map(lambda v: not (isinstance(v, _PLAIN_TYPES) or v is None or v is pd.NA))
        flags = odd.to_numpy(dtype=bool)
        if flags.any():
            raise RequestError(_rule(name, expected, flags, values.to_numpy()))
    return values, inferred


def _bools(values: pd.Series, inferred: str) -> np.ndarray | None:
    """Where ``values`` holds True or False, if anywhere."""
    if inferred in _PLAIN_KINDS - {"boolean"}:
        return None
    flags = values.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
    return flags if flags.any() else None


def _text(values: pd.Series, name: str) -> pd.Series:
    """A categorical feature as text (numbers written as a CSV body gives them)."""
    values, inferred = _plain(values, name, "text values")
    raw = values.to_numpy()
    absent = values.isna().to_numpy()
    if absent.any():
        raise RequestError(_rule(name, "no missing values", absent, raw))
    flags = _bools(values, inferred)
    if flags is not None:
        raise RequestError(_rule(name, "text values", flags, raw))
    if inferred == "string":
        return values
    return values.map(lambda v: v if isinstance(v, str) else str(v)).astype(object)


def _numeric(values: pd.Series, name: str) -> np.ndarray:
    """A column as finite floats, or a ``RequestError`` naming the column and a bad value."""
    values, inferred = _plain(values, name, "numeric values")
    raw = values.to_numpy()
    flags = _bools(values, inferred)
    if flags is not None:
        raise RequestError(_rule(name, "numeric values", flags, raw))
    if values.dtype == object and inferred not in ("string", "floating"):
        values = values.map(_float_or_text)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    absent = values.isna().to_numpy()
    wrong = np.isnan(numbers) & ~absent
    if wrong.any():
        raise RequestError(_rule(name, "numeric values", wrong, raw))
    if absent.any():
        raise RequestError(_rule(name, "no missing values", absent, raw))
    infinite = ~np.isfinite(numbers)
    if infinite.any():
        raise RequestError(_rule(name, "finite numbers", infinite, raw))
    return numbers


def _float_or_text(value: object) -> object:
    """Whole numbers too large for a float become infinite (refused as such), not an error."""
    if isinstance(value, int | np.integer):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, Decimal):
        return float(value)
    return value


def _rule(name: str, rule: str, broken: np.ndarray, raw: np.ndarray) -> str:
    """``column 'X' must have <rule>: N rows break it (first: row R, value V)``."""
    rows = np.flatnonzero(broken)
    count = "1 row breaks it" if len(rows) == 1 else f"{len(rows)} rows break it"
    return (
        f"Column '{name}' must have {rule}: {count} "
        f"(first: row {rows[0] + 1}, value {_shown(raw[rows[0]])})."
    )


def _shown(value: object) -> str:
    """A value as a message shows it: short, and only its type if it is not plain."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if not isinstance(value, _PLAIN_TYPES):
        return f"of type {type(value).__name__}"
    plain = value.item() if isinstance(value, np.generic) else value
    text = repr(plain)
    return text if len(text) <= 40 else f"{text[:37]}..."


# ---------------------------------------------------------------------------- response


def response_type(accept: str | None, request_type: str) -> str | None:
    """The response type for an Accept header; None when it accepts none we answer.

    No Accept header (or only wildcards) answers CSV to CSV and JSON to JSON and
    Parquet, so a batch transform without Accept gets one output line per input line.
    """
    kinds = [media_type(part) for part in (accept or "").split(",") if part.strip()]
    if not kinds or all(kind == "*/*" for kind in kinds):
        return CSV_TYPE if media_type(request_type) == CSV_TYPE else JSON_TYPE
    for kind in kinds:
        for offered in RESPONSE_CONTENT_TYPES:
            major = offered.split("/", 1)[0]
            if kind in (offered, f"{major}/*", "*/*"):
                return offered
    return None


def render(predictions: pd.DataFrame, kind: str, csv_header: bool = False) -> bytes:
    """Predictions as JSON ``{"predictions": [{...}, ...]}`` or CSV lines (one per row)."""
    if kind == CSV_TYPE:
        return predictions.to_csv(index=False, header=csv_header).encode()
    rows = predictions.to_json(orient="records", double_precision=15)
    return b'{"predictions":' + rows.encode() + b"}"


def wants_csv_header(accept: str | None) -> bool:
    """``Accept: text/csv;header=present`` asks for a header row (RFC 4180's parameter)."""
    for part in (accept or "").split(","):
        kind, _, params = part.partition(";")
        if media_type(kind) == CSV_TYPE:
            options = {
                key.strip().lower(): value.strip().lower()
                for key, _, value in (p.partition("=") for p in params.split(";"))
            }
            return options.get("header") == "present"
    return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = [
    "EXPECTED_CLAIMS",
    "FREQUENCY",
    "RequestError",
    "Scorer",
    "load_scorer",
    "predict",
    "read_body",
    "render",
    "response_type",
    "wants_csv_header",
]
