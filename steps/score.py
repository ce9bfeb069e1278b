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
from dataclasses import dataclass
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


def read_body(body: bytes, content_type: str | None, scorer: Scorer) -> pd.DataFrame:
    """The rows of a request body of one of ``REQUEST_CONTENT_TYPES``."""
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
    return _read_parquet(body)


def _read_csv(body: bytes, scorer: Scorer) -> pd.DataFrame:
    """CSV with a header row (it names model features) or without (features in order)."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(f"The CSV body is not UTF-8 text ({exc}).") from None
    first = next((row for row in csv.reader(io.StringIO(text)) if row), [])
    known = {*scorer.features, scorer.exposure}
    text_columns = set(scorer.model.categorical)
    try:
        if any(name in known for name in first):
            duplicated = sorted({name for name in first if first.count(name) > 1})
            if duplicated:
                raise RequestError(f"The CSV header names column '{duplicated[0]}' twice.")
            dtype = {name: str for name in first if name in text_columns}
            return pd.read_csv(io.StringIO(text), dtype=dtype, low_memory=False)
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
        return pd.read_csv(
            io.StringIO(text), header=None, names=names, dtype=dtype, low_memory=False
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise RequestError(f"Could not read the body as CSV: {_one_line(exc)}") from None


def _read_json(body: bytes) -> pd.DataFrame:
    """A list of records (objects keyed by column name), or a single record."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"The body is not valid JSON: {_one_line(exc)}") from None
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list) or not all(isinstance(row, dict) for row in payload):
        raise RequestError(
            'A JSON body must be a list of records keyed by column name, e.g. [{"Area": "C", '
            '"VehPower": 6, ...}].'
        )
    return pd.DataFrame.from_records(payload)


def _read_parquet(body: bytes) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(body))
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
        values = frame[name]
        absent = values.isna().to_numpy()
        if absent.any():
            raise RequestError(_rule(name, "no missing values", absent, values.to_numpy()))
        out[name] = values
    for name in scorer.model.numeric:
        out[name] = _numeric(frame[name], name)
    return out


def _numeric(values: pd.Series, name: str) -> np.ndarray:
    """A column as finite floats, or a ``RequestError`` naming the column and a bad value."""
    raw = values.to_numpy()
    if pd.api.types.is_bool_dtype(values) or (
        values.dtype == object and values.map(lambda v: isinstance(v, bool)).any()
    ):
        flags = values.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy()
        raise RequestError(_rule(name, "numeric values", flags, raw))
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


def _rule(name: str, rule: str, broken: np.ndarray, raw: np.ndarray) -> str:
    """``column 'X' must have <rule>: N rows break it (first: row R, value V)``."""
    rows = np.flatnonzero(broken)
    value = raw[rows[0]]
    shown = "missing" if pd.isna(value) else repr(value.item() if hasattr(value, "item") else value)
    count = "1 row breaks it" if len(rows) == 1 else f"{len(rows)} rows break it"
    return f"Column '{name}' must have {rule}: {count} (first: row {rows[0] + 1}, value {shown})."


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
