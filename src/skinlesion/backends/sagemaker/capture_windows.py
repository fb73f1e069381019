"""Which data capture files of an endpoint fall in a monitoring window, and the ManifestFile
that hands exactly those to the monitor job.

The endpoint's DataCaptureConfig writes ``<capture uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/``.
A short window is listed hour folder by hour folder; a long one (more hour folders than
``MAX_LISTED_HOURS``) is listed once from the variant's prefix and filtered by hour folder, so a
window of any length yields every file in it, the newest hours included.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from skinlesion.capture import DEFAULT_VARIANT, hour_folder_in_window, window_hour_folders
from skinlesion.storage import split_s3

MAX_LISTED_HOURS = 24 * 7  # above a week, one listing of the whole prefix is fewer calls


def capture_prefix(capture_uri: str, endpoint_name: str, variant: str = DEFAULT_VARIANT) -> str:
    """``<capture uri>/<endpoint>/<variant>``: where one endpoint variant's capture lands."""
    return f"{capture_uri.rstrip('/')}/{endpoint_name}/{variant}"


def window_objects(
    s3: Any, prefix_uri: str, start: datetime | None, end: datetime | None
) -> list[str]:
    """The s3:// URIs of the capture files in the window's hour folders (all when unbounded)."""
    bucket, prefix = split_s3(prefix_uri.rstrip("/") + "/")
    hours = window_hour_folders(start, end) if start is not None and end is not None else None
    if hours is not None and len(hours) <= MAX_LISTED_HOURS:
        folders = [f"{prefix}{hour}/" for hour in hours]
    else:
        folders = [prefix]
    uris: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for folder in folders:
        for page in paginator.paginate(Bucket=bucket, Prefix=folder):
            uris.extend(
                f"s3://{bucket}/{item['Key']}"
                for item in page.get("Contents", [])
                if item["Key"].endswith(".jsonl")
                and hour_folder_in_window(item["Key"][len(prefix) :], start, end)
            )
    return sorted(uris)


def manifest(uris: list[str]) -> list[Any]:
    """A SageMaker ManifestFile body: the bucket as prefix, then each key relative to it."""
    if not uris:
        raise ValueError("A manifest needs at least one object.")
    buckets = {uri.split("/", 3)[2] for uri in uris}
    if len(buckets) != 1:
        raise ValueError(f"A manifest covers one bucket; got {sorted(buckets)}.")
    bucket = buckets.pop()
    return [{"prefix": f"s3://{bucket}/"}, *(uri.split("/", 3)[3] for uri in uris)]
