"""The S3 data plane: s3:// URIs pass straight into job requests; local paths are staged once.

An ``s3://`` input goes into a channel or a ProcessingInput unchanged: nothing is copied. A job
whose step hands a local path as its output (the step's artifact folder, which receives only a
pointer) writes under the job-outputs root instead, ``<root>/<job name>/<output name>/``: the
same place for every attempt of the step, outside any KFP artifact's URI prefix, so KFP's launcher
never downloads the data into a pod. Nothing comes back to the local path. A local input (a
kfp.local run of a folder on disk) is uploaded under the staging prefix once. model.tar.gz is
packed by ``skinlesion.artifacts`` and nowhere else.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from skinlesion.artifacts import MODEL_ARCHIVE, SPEC_FILE, pack_model
from skinlesion.backends.sagemaker.errors import JobOutputMissingError, is_not_found

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class S3Uri:
    """A parsed ``s3://bucket/key`` URI."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        """Parse ``s3://bucket[/key]``; anything else raises ValueError saying what is accepted."""
        if not is_s3_uri(uri):
            raise ValueError(f"Not an S3 URI: {uri!r}. Accepted: s3://<bucket>/<key>.")
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"S3 URI {uri!r} has no bucket. Accepted: s3://<bucket>/<key>.")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, *parts: str) -> S3Uri:
        """This URI with ``parts`` appended as path segments."""
        key = "/".join([self.key.rstrip("/"), *(p.strip("/") for p in parts)]).lstrip("/")
        return S3Uri(self.bucket, key)

    @property
    def prefix(self) -> str:
        """The key as a folder prefix (ending in ``/``; empty for the bucket root)."""
        return self.key if not self.key or self.key.endswith("/") else self.key + "/"


def is_s3_uri(uri: str) -> bool:
    """True for ``s3://...``."""
    return uri.startswith("s3://")


def join_uri(uri: str, *parts: str) -> str:
    """Append path segments to an s3:// URI or a local path."""
    if is_s3_uri(uri):
        return str(S3Uri.parse(uri).join(*parts))
    return str(Path(uri).joinpath(*parts))


class S3DataPlane:
    """Moves what must move between local paths and S3, and finds objects jobs wrote."""

    def __init__(
        self, s3: Any, staging_root: str, *, output_root: str = "", kms_key_id: str = ""
    ) -> None:
        self.s3 = s3
        self.staging_root = staging_root
        self.output_root = output_root
        self.kms_key_id = kms_key_id

    # --- inputs -----------------------------------------------------------------------------
    def input_uri(self, uri: str, *, job_name: str, name: str) -> str:
        """The S3 URI a job reads ``uri`` from: itself if s3://, else a staged upload."""
        if is_s3_uri(uri):
            return uri
        source = Path(uri)
        if not source.exists():
            raise FileNotFoundError(
                f"Input {name} {uri!r} does not exist (a local path or s3:// URI)."
            )
        destination = S3Uri.parse(self.staging_root).join(job_name, name)
        self.upload(source, destination)
        return str(destination) + "/"

    def output_uri(self, uri: str, *, job_name: str, name: str) -> str:
        """The S3 URI a job writes to: ``uri`` itself if s3://; for a local path (the step's
        artifact folder, which gets a pointer, not the data) ``<output root>/<job>/<name>/``."""
        if is_s3_uri(uri):
            return uri
        if not self.output_root:
            raise ValueError(
                f"Output {name} of job {job_name} is the local path {uri!r} and this data plane "
                "has no output root: pass an s3:// output or output_root=s3://<bucket>/<prefix>."
            )
        return str(S3Uri.parse(self.output_root).join(job_name, name)) + "/"

    def upload(self, source: Path, destination: S3Uri) -> int:
        """Upload a file (to ``destination/<name>``) or a folder's tree; returns the file count."""
        files = (
            [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        )
        root = source.parent if source.is_file() else source
        for path in files:
            key = destination.join(path.relative_to(root).as_posix()).key
            self.s3.upload_file(str(path), destination.bucket, key, ExtraArgs=self._extra_args())
        log.info("Uploaded %d files from %s to %s", len(files), source, destination)
        return len(files)

    def put_json(self, destination: S3Uri, value: Any) -> None:
        """Write ``value`` as a JSON object at ``destination`` (KMS-encrypted when a key is set)."""
        self.s3.put_object(
            Bucket=destination.bucket,
            Key=destination.key,
            Body=json.dumps(value).encode(),
            **self._extra_args(),
        )

    def put_bytes(self, destination: S3Uri, body: bytes) -> None:
        """Write ``body`` at ``destination`` (KMS-encrypted when a key is set)."""
        self.s3.put_object(
            Bucket=destination.bucket, Key=destination.key, Body=body, **self._extra_args()
        )

    def _extra_args(self) -> dict[str, str]:
        if not self.kms_key_id:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}

    # --- outputs ----------------------------------------------------------------------------
    def download(self, uri: str, destination: Path) -> int:
        """Download an object (into ``destination``) or every object under a prefix; file count."""
        location = S3Uri.parse(uri)
        keys = self.list_keys(uri)
        if not keys:
            raise JobOutputMissingError(f"Nothing at {uri} to download to {destination}.")
        destination.mkdir(parents=True, exist_ok=True)
        for key in keys:
            relative = (
                key[len(location.prefix) :] if key != location.key else key.rsplit("/", 1)[-1]
            )
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(location.bucket, key, str(target))
        log.info("Downloaded %d files from %s to %s", len(keys), uri, destination)
        return len(keys)

    def list_keys(self, uri: str) -> list[str]:
        """The keys of the object ``uri`` itself, or of every object under it as a prefix."""
        location = S3Uri.parse(uri)
        if location.key and not location.key.endswith("/") and self.exists(str(location)):
            return [location.key]
        keys: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def exists(self, uri: str) -> bool:
        """True when the object exists."""
        location = S3Uri.parse(uri)
        try:
            self.s3.head_object(Bucket=location.bucket, Key=location.key)
        except ClientError as error:
            if is_not_found(error):
                return False
            raise
        return True

    def read_json(self, uri: str) -> Any:
        """The parsed JSON object at ``uri``."""
        location = S3Uri.parse(uri)
        try:
            body = self.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        except ClientError as error:
            if is_not_found(error):
                raise JobOutputMissingError(f"No object at {uri}.") from None
            raise
        return json.loads(body)

    # --- models -----------------------------------------------------------------------------
    def model_archive_uri(self, model_uri: str, *, staging_name: str) -> str:
        """The S3 URI of the model.tar.gz that ``model_uri`` holds, packing and uploading if local.

        Accepts the archive's URI, a prefix with a model.tar.gz somewhere under it (the newest
        wins: SageMaker writes ``<output path>/<job>/output/model.tar.gz``), a local archive, a
        local folder holding one, or a local model folder (model.json + weights) to pack.
        """
        if is_s3_uri(model_uri):
            if model_uri.endswith(".tar.gz"):
                if not self.exists(model_uri):
                    raise JobOutputMissingError(f"No model archive at {model_uri}.")
                return model_uri
            return self._newest_archive(model_uri)
        path = Path(model_uri)
        destination = S3Uri.parse(self.staging_root).join(staging_name, "model")
        if path.is_file() and path.name.endswith(".tar.gz"):
            archive = path
        elif (path / SPEC_FILE).exists():
            with tempfile.TemporaryDirectory() as scratch:
                archive = pack_model(path, Path(scratch) / MODEL_ARCHIVE)
                self.upload(archive, destination)
            return str(destination.join(MODEL_ARCHIVE))
        else:
            found = sorted(path.rglob(MODEL_ARCHIVE)) if path.is_dir() else []
            if not found:
                raise JobOutputMissingError(
                    f"{model_uri} holds no model: expected {MODEL_ARCHIVE}, or a folder with "
                    f"{SPEC_FILE}, or an s3:// URI."
                )
            archive = found[0]
        self.upload(archive, destination)
        return str(destination.join(archive.name))

    def _newest_archive(self, prefix_uri: str) -> str:
        location = S3Uri.parse(prefix_uri)
        newest: dict[str, Any] | None = None
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix):
            for obj in page.get("Contents", []):
                if obj["Key"].rsplit("/", 1)[-1] == MODEL_ARCHIVE and (
                    newest is None or obj["LastModified"] > newest["LastModified"]
                ):
                    newest = obj
        if newest is None:
            raise JobOutputMissingError(
                f"No {MODEL_ARCHIVE} under {prefix_uri}. Expected the output of a training job."
            )
        return str(S3Uri(location.bucket, newest["Key"]))
