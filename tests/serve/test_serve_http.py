"""The model server over real HTTP: SageMaker's hosting and batch transform contract.

One server (``python -m container.entrypoint serve`` on an /opt/ml tree, two
workers, a 1 MB payload limit) answers every test here.
"""

from __future__ import annotations

import gzip
import http.client
import io
import json
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from conf.contract import REQUEST_CONTENT_TYPES, RESPONSE_CONTENT_TYPES
from steps.score import Scorer
from tests.serve.support import PAYLOAD_MB, Server, Trained, chunked, post_head, raw_exchange

ROWS = 25


def request(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, str, bytes]:
    """One HTTP request; returns status, content type and body."""
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
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


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda f: pd.concat([f] * 4000, ignore_index=True), "100000 rows of 10 columns"),
        (lambda f: f.assign(Region="R" * 100_000), "2500000 bytes of text"),
    ],
)
def test_a_parquet_body_that_expands_past_the_limit_gets_413(
    server: Server, policies: pd.DataFrame, make: object, words: str
) -> None:
    """Tens of KB of Parquet that would be more than the payload limit of CSV in memory."""
    body = encode(make(policies), "application/x-parquet")  # type: ignore[operator]
    assert len(body) < 100_000
    status, _, answer = invoke(server, body, "application/x-parquet")
    assert status == 413 and words in answer.decode(), answer


def test_a_compressed_body_gets_415_not_a_misread(server: Server, policies: pd.DataFrame) -> None:
    body = gzip.compress(encode(policies, "text/csv"))
    headers = {"Content-Type": "text/csv", "Content-Encoding": "gzip"}
    status, _, answer = request(server, "POST", "/invocations", body, headers)
    assert status == 415 and b"Content-Encoding gzip" in answer, answer


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


# ------------------------------------------------- every row in, one prediction out


def over_the_limit(policies: pd.DataFrame, megabytes: int) -> bytes:
    """A CSV body a few rows over ``megabytes``."""
    row = encode(policies.head(1), "text/csv", header=False)
    header = ",".join(policies.columns).encode() + b"\n"
    return header + row * (megabytes * 1024 * 1024 // len(row) + 10)


def test_chunked_body_over_the_limit_gets_413_not_a_cut(
    server: Server, policies: pd.DataFrame
) -> None:
    """It was cut at the limit and scored (the last row with a truncated number)."""
    body = over_the_limit(policies, PAYLOAD_MB)
    head = post_head("text/csv", Transfer_Encoding="chunked")
    status, answer = raw_exchange(server, head + chunked(body))
    assert status == 413, answer
    assert f"{PAYLOAD_MB} MB" in answer


def test_chunked_body_within_the_limit_is_scored_row_by_row(
    server: Server, policies: pd.DataFrame, expected: np.ndarray
) -> None:
    head = post_head("text/csv", Transfer_Encoding="chunked", Accept="text/csv")
    status, answer = raw_exchange(server, head + chunked(encode(policies, "text/csv"), size=97))
    assert status == 200, answer
    got = [float(line.split(",")[0]) for line in answer.splitlines()]
    np.testing.assert_allclose(got, expected, rtol=1e-9)


@pytest.mark.parametrize(
    ("framing", "words"),
    [
        ("content-length", "ended after"),  # fewer bytes than announced, then EOF
        ("no-last-chunk", "before its last chunk"),
        ("cut-in-a-chunk", "before its last chunk"),
        ("bad-chunk-size", "not valid chunked"),
    ],
)
def test_a_body_cut_short_is_refused_never_scored(
    server: Server, policies: pd.DataFrame, framing: str, words: str
) -> None:
    body = encode(policies, "text/csv")
    if framing == "content-length":
        data = post_head("text/csv", Content_Length=len(body) + 40) + body
    elif framing == "no-last-chunk":
        data = post_head("text/csv", Transfer_Encoding="chunked") + chunked(body, last=False)
    elif framing == "cut-in-a-chunk":
        data = post_head("text/csv", Transfer_Encoding="chunked") + chunked(body)[:-60]
    else:
        data = post_head("text/csv", Transfer_Encoding="chunked") + b"zz\r\n" + body
    status, answer = raw_exchange(server, data)
    assert status == 400, answer
    assert words in answer and answer.count("\n") == 1, answer


def csv_with_extra_field(frame: pd.DataFrame) -> bytes:
    lines = frame.to_csv(index=False).splitlines()
    lines[2] += ",7"
    return ("\n".join(lines) + "\n").encode()


def parquet_with_dates(frame: pd.DataFrame) -> bytes:
    return encode(frame.assign(DrivAge=pd.Timestamp("2024-01-01")), "application/x-parquet")


def json_with(frame: pd.DataFrame, column: str, value: object) -> bytes:
    records = json.loads(frame.to_json(orient="records"))
    records[1][column] = value
    return json.dumps(records).encode()


@pytest.mark.parametrize(
    ("make", "content_type", "words"),
    [
        (csv_with_extra_field, "text/csv", ["Line 3", "11 fields"]),
        (lambda f: b"[{}, {}]", "application/json", ["Missing feature columns", "'Area'"]),
        (lambda f: b'[{"Area": "C"}, {}]', "application/json", ["Missing", "'DrivAge'"]),
        (parquet_with_dates, "application/x-parquet", ["'DrivAge'", "datetime64"]),
        (lambda f: json_with(f, "Area", ["C", "D"]), "application/json", ["'Area'", "list"]),
        (lambda f: json_with(f, "Density", {"v": 1}), "application/json", ["'Density'", "dict"]),
        (lambda f: json_with(f, "VehAge", int("9" * 401)), "application/json", ["'VehAge'"]),
        (
            lambda f: f.assign(VehAge="9" * 401).to_csv(index=False).encode(),
            "text/csv",
            ["'VehAge'", "finite"],
        ),
        (lambda f: b"[" * 100_000 + b"]" * 100_000, "application/json", ["nested too deeply"]),
    ],
)
def test_misread_bodies_get_400_naming_the_problem(
    server: Server, policies: pd.DataFrame, make: object, content_type: str, words: list[str]
) -> None:
    body = make(policies)  # type: ignore[operator]
    status, kind, answer = invoke(server, body, content_type)
    message = answer.decode()
    assert status == 400 and kind.startswith("text/plain"), message
    assert message.count("\n") == 1 and all(word in message for word in words), message


# ----------------------------------------------------------------------- availability


def slow_client(server: Server, body_only: bool, seconds: float, stop: threading.Event) -> None:
    """A client that sends one byte every half second (of its headers, or of its body)."""
    host, port = server.url.removeprefix("http://").split(":")
    data = post_head("text/csv", Content_Length=1000) + b"x" * 1000
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        if body_only:
            head = data.index(b"\r\n\r\n") + 4
            sock.sendall(data[:head])
            data = data[head:]
        deadline = time.monotonic() + seconds
        for byte in data:
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # the server closed a client too slow for it
                return
            stop.wait(0.5)


def test_slow_clients_do_not_hold_the_workers(server: Server) -> None:
    """Six clients trickling bytes (three times the workers): /ping still answers."""
    stop = threading.Event()
    clients = [
        threading.Thread(target=slow_client, args=(server, i % 2 == 0, 6.0, stop)) for i in range(6)
    ]
    for client in clients:
        client.start()
    try:
        time.sleep(1.5)  # every slow client is connected and trickling
        url = urllib.parse.urlsplit(server.url)
        for _ in range(3):
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=3)
            try:
                conn.request("GET", "/ping")
                assert conn.getresponse().status == 200
            finally:
                conn.close()
            time.sleep(0.5)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=15)


def big_body(policies: pd.DataFrame) -> bytes:
    """600,000 rows as Parquet (under 1 MB, within the tight server's 16 MB of CSV): seconds
    of scoring, past its 1 s."""
    rows = pd.concat([policies] * (600_000 // len(policies)), ignore_index=True)
    return encode(rows, "application/x-parquet")


def test_ping_answers_while_every_worker_is_scoring(
    tight_server: Server, policies: pd.DataFrame
) -> None:
    """Two bodies of 6 MB (SageMaker's limit), one per worker, each seconds of work."""
    row = encode(policies.head(1), "text/csv", header=False)
    body = row * (6_000_000 // len(row))
    answers: list[int] = []

    def score() -> None:
        answers.append(invoke(tight_server, body, "text/csv")[0])

    busy = [threading.Thread(target=score) for _ in range(2)]
    for thread in busy:
        thread.start()
    time.sleep(0.3)  # both bodies sent (loopback) and being scored
    status = request(tight_server, "GET", "/ping", timeout=3)[0]
    still_busy = sum(thread.is_alive() for thread in busy)
    for thread in busy:
        thread.join(timeout=60)
    assert status == 200
    assert still_busy == 2, "the scoring requests ended before /ping was asked"
    assert sorted(answers) in ([200, 200], [200, 504], [504, 504]), answers


def test_scoring_past_the_timeout_gets_504_and_the_worker_is_replaced(
    tight_server: Server, policies: pd.DataFrame, expected: np.ndarray
) -> None:
    booted = tight_server.log_text().count("Booting worker")
    status, _, answer = invoke(tight_server, big_body(policies), "application/x-parquet")
    assert status == 504, answer
    assert b"SAGEMAKER_MODEL_SERVER_TIMEOUT" in answer
    deadline = time.monotonic() + 60
    while tight_server.log_text().count("Booting worker") == booted:
        assert time.monotonic() < deadline, tight_server.log_text()
        time.sleep(0.2)
    # Small requests are scored again (a few tries: the 1 s is tight on a busy machine).
    statuses = []
    for _ in range(3):
        statuses.append(invoke(tight_server, encode(policies, "text/csv"), "text/csv")[0])
        if statuses[-1] == 200:
            break
    assert statuses[-1] == 200, statuses
    assert "Traceback" not in tight_server.log_text()


@pytest.mark.parametrize("half_close", [False, True])
def test_a_body_slower_than_the_timeout_gets_408(tight_server: Server, half_close: bool) -> None:
    """Still arriving when the time is up (or never arriving: shorter than announced)."""
    data = post_head("text/csv", Content_Length=1000) + b"Area,VehBrand\n"
    if half_close:  # announced 1000 bytes, sent 14 and closed: refused at once
        status, answer = raw_exchange(tight_server, data, half_close=True, timeout=15)
        assert status == 400 and "ended after 14 of the 1000 bytes" in answer, answer
        return
    status, answer = raw_exchange(tight_server, data, half_close=False, timeout=15)
    assert status == 408 and "timeout of 1 s" in answer, answer
