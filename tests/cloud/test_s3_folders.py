"""Folders to and from S3 prefixes (``pipelines.sagemaker.s3``), against the local endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from conf.channel import digest, write_channel
from conf.errors import ConfigError
from pipelines.sagemaker import aws as pipeline_aws
from pipelines.sagemaker import s3


@pytest.fixture
def client(aws: str) -> Any:
    s3_client = boto3.client("s3", region_name="us-east-1")
    s3_client.create_bucket(Bucket="config")
    return s3_client


def test_a_channel_goes_up_and_comes_back_the_same(client: Any, tmp_path: Path) -> None:
    folder = tmp_path / "channel"
    write_channel(folder, ["model=glm_poisson"])
    uri = f"s3://config/claim-frequency/config/{digest(folder)}/"
    sent = pipeline_aws.upload_channel(client, folder, uri)
    assert sent == len([p for p in folder.rglob("*") if p.is_file()]) > 0
    assert (
        pipeline_aws.upload_channel(client, folder, uri) == sent
    )  # content-addressed: the same keys

    back = tmp_path / "back"
    assert pipeline_aws.download_channel(client, uri, back) == sent
    assert digest(back) == digest(folder)


def test_a_prefix_download_keeps_relative_paths_and_skips_folder_markers(
    client: Any, tmp_path: Path
) -> None:
    client.put_object(Bucket="config", Key="data/train/", Body=b"")
    client.put_object(Bucket="config", Key="data/train/a.csv", Body=b"a")
    client.put_object(Bucket="config", Key="data/train/sub/b.csv", Body=b"b")
    assert s3.download_prefix(client, "s3://config/data/train/", tmp_path / "t") == 2
    assert (tmp_path / "t" / "a.csv").read_text() == "a"
    assert (tmp_path / "t" / "sub" / "b.csv").read_text() == "b"
    # An S3 URI that is one object's key downloads that object under its own name.
    assert s3.download_prefix(client, "s3://config/data/train/a.csv", tmp_path / "one") == 1
    assert (tmp_path / "one" / "a.csv").read_text() == "a"


def test_a_missing_channel_is_named(client: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="empty or gone: run `make upsert-pipeline`"):
        pipeline_aws.download_channel(client, "s3://config/claim-frequency/config/none/", tmp_path)
