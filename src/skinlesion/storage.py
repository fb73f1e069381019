"""Artifact storage by URI: local paths, ``file://`` and ``s3://``, behind three functions."""

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


def _s3_client() -> Any:
    from skinlesion.aws import client_factory_from_environment

    return client_factory_from_environment().client("s3")


def download(uri: str, destination: Path) -> Path:
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
    s3 = _s3_client()
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


def upload(source: Path, uri: str) -> str:
    """Copy a file or folder to ``uri`` (a local path or an S3 prefix); return the URI."""
    source = Path(source)
    if not is_s3(uri):
        target = local_path(uri)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        return uri
    bucket, key = split_s3(uri)
    s3 = _s3_client()
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            s3.upload_file(str(path), bucket, f"{key.rstrip('/')}/{path.relative_to(source)}")
    else:
        s3.upload_file(str(source), bucket, key)
    return uri


def read_json(uri: str) -> Any:
    """Parse the JSON document at ``uri``."""
    if not is_s3(uri):
        return json.loads(local_path(uri).read_text())
    bucket, key = split_s3(uri)
    body = _s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return json.loads(body)


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or an S3 URI."""
    if is_s3(uri) or uri.startswith("file://"):
        return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(uri, *parts))
