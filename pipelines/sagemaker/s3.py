"""Folders to and from S3 prefixes: one home for the pipeline, the cloud runs and replay.

``make upsert-pipeline`` uploads the pipeline's config channel, ``make cloud-run``
and ``make cloud-tune`` each job's, ``make start-pipeline`` downloads the deployed
channel again and ``make replay`` downloads a job's inputs. A channel's prefix is
content-addressed (``conf.channel.digest``): uploading it again writes the same
objects. Plain functions over a boto3 S3 client; nothing here imports boto3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def upload_folder(s3: Any, folder: Path, uri: str) -> int:
    """Every file under ``folder`` to ``<uri><its relative path>``; how many."""
    bucket, prefix = split(uri)
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, prefix + path.relative_to(folder).as_posix())
        count += 1
    return count


def download_prefix(s3: Any, uri: str, folder: Path) -> int:
    """Every object under the S3 prefix ``uri`` into ``folder``; how many.

    An object's path is its key after the prefix (an object whose key is the whole
    prefix keeps its own name); a folder marker (a key ending in ``/``) is no file.
    """
    bucket, prefix = split(uri)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue
            target = folder / (key[len(prefix) :].lstrip("/") or Path(key).name)
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
            count += 1
    return count
