"""Artifact storage by URI: local paths, ``file://`` and ``s3://``, behind a few functions.

``s3://`` URIs are read with the S3 client the caller hands in (a backend's, or one built from
the settings at a job's entry); nothing here builds AWS clients.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def local_path(uri: str) -> Path:
    """The filesystem path of a local URI (plain path or ``file://``)."""
    if is_s3(uri):
        raise ValueError(f"{uri} is an S3 URI; expected a local path or file:// URI.")
    return Path(urlparse(uri).path) if uri.startswith("file://") else Path(uri)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"Invalid S3 URI {uri!r}: expected s3://<bucket>/<key>.")
    return parsed.netloc, parsed.path.lstrip("/")


def _require(s3: Any, uri: str) -> Any:
    if s3 is None:
        raise ValueError(
            f"{uri} is an S3 URI and no S3 client was given: pass s3= (a backend's client, or "
            "skinlesion.aws.AwsClients(...).client('s3'))."
        )
    return s3


def download(uri: str, destination: Path, *, s3: Any = None) -> Path:
    """Copy a file or a whole prefix/folder at ``uri`` to ``destination``; return it."""
    destination = Path(destination)
    if not is_s3(uri):
        source = local_path(uri)
        if source.is_dir():
            shutil.copytree(source, destination, dirs_exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        return destination
    bucket, key = split_s3(uri)
    s3 = _require(s3, uri)
    paginator = s3.get_paginator("list_objects_v2")
    prefix = key.rstrip("/") + "/"
    found = False
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            target = destination / item["Key"][len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
            found = True
    if not found:
        destination.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(destination))
    log.debug("downloaded %s to %s", uri, destination)
    return destination


def read_json(uri: str, *, s3: Any = None) -> Any:
    """Parse the JSON document at ``uri``."""
    if not is_s3(uri):
        return json.loads(local_path(uri).read_text())
    bucket, key = split_s3(uri)
    body = _require(s3, uri).get_object(Bucket=bucket, Key=key)["Body"].read()
    return json.loads(body)


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or an S3 URI."""
    if is_s3(uri) or uri.startswith("file://"):
        return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(uri, *parts))
