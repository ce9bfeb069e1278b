"""The model server over real HTTP: SageMaker's hosting and batch transform contract.

One server (``python -m container.entrypoint serve`` on an /opt/ml tree, two
workers, a 1 MB payload limit) answers every test here.
"""

from __future__ import annotations

import http.client
import io
import json
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from conf.contract import REQUEST_CONTENT_TYPES, RESPONSE_CONTENT_TYPES
from steps.score import Scorer
from tests.serve.support import PAYLOAD_MB, Server, Trained

ROWS = 25


def request(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """One HTTP request; returns status, content type and body."""
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def invoke(
    server: Server, body: bytes, content_type: str, accept: str | None = None
) -> tuple[int, str, bytes]:
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    return request(server, "POST", "/invocations", body, headers)


def encode(frame: pd.DataFrame, content_type: str, header: bool = True) -> bytes:
    if content_type == "text/csv":
        return frame.to_csv(index=False, header=header).encode()
    if content_type == "application/json":
        return frame.to_json(orient="records").encode()
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def decode(content_type: str, body: bytes, columns: list[str]) -> pd.DataFrame:
    if content_type.startswith("application/json"):
        return pd.DataFrame(json.loads(body)["predictions"])
    return pd.read_csv(io.BytesIO(body), header=None, names=columns)


@pytest.fixture(scope="module")
def policies(trained: Trained, scorer: Scorer) -> pd.DataFrame:
    """New policies: the model's features and exposure, no claim counts."""
    return trained.test[[*scorer.features, scorer.exposure]].head(ROWS).reset_index(drop=True)


@pytest.fixture(scope="module")
def expected(policies: pd.DataFrame, scorer: Scorer) -> np.ndarray:
    return scorer.model.predict(policies)


def test_ping_and_execution_parameters(server: Server) -> None:
    assert request(server, "GET", "/ping")[0] == 200
    status, kind, body = request(server, "GET", "/execution-parameters")
    assert (status, kind) == (200, "application/json")
    assert json.loads(body) == {
        "MaxConcurrentTransforms": 2,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": PAYLOAD_MB,
    }


@pytest.mark.parametrize("accept", RESPONSE_CONTENT_TYPES)
@pytest.mark.parametrize("content_type", REQUEST_CONTENT_TYPES)
def test_every_content_type_and_accept(
    server: Server,
    policies: pd.DataFrame,
    expected: np.ndarray,
    content_type: str,
    accept: str,
) -> None:
    status, kind, body = invoke(server, encode(policies, content_type), content_type, accept)
    assert status == 200, body
    assert kind.startswith(accept)
    got = decode(kind, body, ["frequency", "expected_claims"])
    np.testing.assert_allclose(got["frequency"], expected, rtol=1e-9)
    np.testing.assert_allclose(got["expected_claims"], expected * policies["Exposure"], rtol=1e-9)


def test_csv_without_header_is_features_in_order(
    server: Server, policies: pd.DataFrame, expected: np.ndarray, scorer: Scorer
) -> None:
    """As batch transform sends it: no header, features in order, optionally exposure."""
    bare = policies[scorer.features]
    status, kind, body = invoke(server, encode(bare, "text/csv", header=False), "text/csv")
    assert (status, kind.split(";")[0]) == (200, "text/csv"), body
    lines = body.decode().splitlines()
    assert len(lines) == ROWS  # one output line per input line, no header
    np.testing.assert_allclose([float(x) for x in lines], expected, rtol=1e-9)

    with_exposure = policies[[*scorer.features, "Exposure"]]
    status, _, body = invoke(
        server, encode(with_exposure, "text/csv", header=False), "text/csv", "application/json"
    )
    got = pd.DataFrame(json.loads(body)["predictions"])
    np.testing.assert_allclose(got["expected_claims"], expected * policies["Exposure"])


def test_csv_header_in_any_order_and_csv_header_on_request(
    server: Server, policies: pd.DataFrame, expected: np.ndarray
) -> None:
    shuffled = policies[list(reversed(policies.columns))].assign(ClaimNb=0, IDpol=7)
    status, _, body = invoke(
        server, encode(shuffled, "text/csv"), "text/csv", "text/csv;header=present"
    )
    assert status == 200, body
    got = pd.read_csv(io.BytesIO(body))
    assert list(got.columns) == ["frequency", "expected_claims"]
    np.testing.assert_allclose(got["frequency"], expected, rtol=1e-9)


def test_unseen_categories_are_scored_as_in_evaluation(
    server: Server, policies: pd.DataFrame, scorer: Scorer
) -> None:
    odd = policies.head(3).assign(VehBrand="B-never-seen", Region="R-nowhere")
    status, _, body = invoke(server, encode(odd, "application/json"), "application/json")
    assert status == 200, body
    got = pd.DataFrame(json.loads(body)["predictions"])
    np.testing.assert_allclose(got["frequency"], scorer.model.predict(odd), rtol=1e-9)


@pytest.mark.parametrize(
    ("change", "content_type", "status", "words"),
    [
        (lambda f: f.drop(columns=["DrivAge"]), "text/csv", 400, ["'DrivAge'", "Missing"]),
        (lambda f: f.assign(VehAge="old"), "application/json", 400, ["'VehAge'", "numeric"]),
        (lambda f: f.assign(Density=None), "application/json", 400, ["'Density'", "missing"]),
        (lambda f: f.assign(Exposure=-1.0), "text/csv", 400, ["'Exposure'", "> 0"]),
        (lambda f: f.assign(BonusMalus=True), "application/json", 400, ["'BonusMalus'"]),
    ],
)
def test_bad_columns_get_4xx_naming_the_column(
    server: Server,
    policies: pd.DataFrame,
    change: object,
    content_type: str,
    status: int,
    words: list[str],
) -> None:
    bad = change(policies.copy())  # type: ignore[operator]
    got, kind, body = invoke(server, encode(bad, content_type), content_type)
    message = body.decode()
    assert got == status and kind.startswith("text/plain"), message
    assert message.count("\n") == 1, message
    assert all(word in message for word in words), message


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "word"),
    [
        (b"", "text/csv", None, 400, "empty"),
        (b"   \n", "application/json", None, 400, "empty"),
        (b"{not json", "application/json", None, 400, "JSON"),
        (b'"a string"', "application/json", None, 400, "records"),
        (b"PAR1 not parquet", "application/x-parquet", None, 400, "Parquet"),
        (b"a,b\n1,2\n", "text/csv", None, 400, "columns"),
        (b"x", "text/plain", None, 415, "text/plain"),
        (b"x", "text/csv", "application/xml", 406, "application/xml"),
    ],
)
def test_bad_requests(
    server: Server, body: bytes, content_type: str, accept: str | None, status: int, word: str
) -> None:
    got, _, answer = invoke(server, body, content_type, accept)
    assert got == status, answer
    assert word in answer.decode()


def test_payload_over_the_limit_gets_413(server: Server) -> None:
    body = b"x" * (PAYLOAD_MB * 1024 * 1024 + 1)
    status, _, answer = invoke(server, body, "text/csv")
    assert status == 413
    assert f"{PAYLOAD_MB} MB" in answer.decode()


def test_unknown_route_and_method(server: Server) -> None:
    assert request(server, "GET", "/nowhere")[0] == 404
    assert request(server, "GET", "/invocations")[0] == 405


def test_concurrent_requests_all_answered_and_no_worker_crashed(
    server: Server, policies: pd.DataFrame, expected: np.ndarray
) -> None:
    good = encode(policies, "text/csv")
    bad = encode(policies.assign(VehAge="old"), "text/csv")

    def call(i: int) -> tuple[int, bytes]:
        status, _, body = invoke(server, bad if i % 4 == 3 else good, "text/csv", "text/csv")
        return status, body

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(40)))
    for i, (status, body) in enumerate(results):
        if i % 4 == 3:
            assert status == 400
        else:
            assert status == 200
            got = [float(line.split(",")[0]) for line in body.decode().splitlines()]
            np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert request(server, "GET", "/ping")[0] == 200
    log = server.log_text()
    assert log.count("Booting worker") == 2, log  # no worker died and was replaced
    assert "Traceback" not in log
