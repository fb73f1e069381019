"""The S3 data plane against moto: s3:// URIs untouched, local paths staged, outputs fetched,
model.tar.gz found or packed (by skinlesion.artifacts)."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from tests.aws.helpers import BUCKETS, put

from skinlesion.artifacts import ModelSpec, unpack_model
from skinlesion.aws import AwsClients
from skinlesion.backends.sagemaker.errors import JobOutputMissingError
from skinlesion.backends.sagemaker.s3 import S3DataPlane, S3Uri, join_uri

MODELS = BUCKETS["models_bucket"]
KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture
def s3(clients: AwsClients) -> Any:
    return clients.client("s3")


@pytest.fixture
def plane(s3: Any) -> S3DataPlane:
    return S3DataPlane(s3, f"s3://{MODELS}/staging", output_root=f"s3://{MODELS}/job-outputs")


def keys(s3: Any, prefix: str = "") -> list[str]:
    return sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket=MODELS, Prefix=prefix).get("Contents", [])
    )


def test_uri_parsing_and_joining() -> None:
    uri = S3Uri.parse("s3://bucket/a/b/")
    assert (uri.bucket, uri.key, uri.prefix) == ("bucket", "a/b/", "a/b/")
    assert str(uri.join("c", "/d/")) == "s3://bucket/a/b/c/d"
    assert S3Uri.parse("s3://bucket").prefix == ""
    assert join_uri("s3://b/x", "metrics.json") == "s3://b/x/metrics.json"
    assert join_uri("/tmp/x", "metrics.json") == "/tmp/x/metrics.json"
    for bad in ("/local/path", "s3://", "gs://b/k"):
        with pytest.raises(ValueError, match="Accepted: s3://<bucket>/<key>"):
            S3Uri.parse(bad)


def test_s3_uris_are_used_as_they_are(plane: S3DataPlane, s3: Any) -> None:
    uri = f"s3://{BUCKETS['processed_bucket']}/runs/r/dataset"
    assert plane.input_uri(uri, job_name="j", name="dataset") == uri
    assert plane.output_uri(uri, job_name="j", name="dataset") == uri
    assert keys(s3) == []  # no copy


def test_local_folders_and_files_are_staged_once(
    plane: S3DataPlane, s3: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    (folder / "labels.csv").write_text("image,MEL\n")
    (folder / "images" / "a.jpg").write_bytes(b"jpg")
    assert (
        plane.input_uri(str(folder), job_name="job-1", name="data")
        == f"s3://{MODELS}/staging/job-1/data/"
    )
    single = tmp_path / "one.csv"
    single.write_text("x")
    assert (
        plane.input_uri(str(single), job_name="job-1", name="extra")
        == f"s3://{MODELS}/staging/job-1/extra/"
    )
    assert keys(s3) == [
        "staging/job-1/data/images/a.jpg",
        "staging/job-1/data/labels.csv",
        "staging/job-1/extra/one.csv",
    ]
    # A local output path is an artifact's folder: the job writes under the output root.
    assert plane.output_uri(str(tmp_path / "out"), job_name="job-1", name="dataset") == (
        f"s3://{MODELS}/job-outputs/job-1/dataset/"
    )
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plane.input_uri(str(tmp_path / "absent"), job_name="job-1", name="data")


def test_uploads_are_encrypted_with_the_kms_key(s3: Any, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    S3DataPlane(s3, f"s3://{MODELS}/staging", kms_key_id=KMS).input_uri(
        str(tmp_path), job_name="j", name="n"
    )
    head = s3.head_object(Bucket=MODELS, Key="staging/j/n/f.txt")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KMS)


def test_a_local_output_without_an_output_root_is_refused(s3: Any, tmp_path: Path) -> None:
    plane = S3DataPlane(s3, f"s3://{MODELS}/staging")
    with pytest.raises(ValueError, match=r"no output root: pass an s3:// output or output_root="):
        plane.output_uri(str(tmp_path / "out"), job_name="job-1", name="dataset")


def test_download_of_a_prefix_and_of_an_object(plane: S3DataPlane, s3: Any, tmp_path: Path) -> None:
    put(s3, f"s3://{MODELS}/out/eval/metrics.json", b"{}")
    put(s3, f"s3://{MODELS}/out/eval/plots/roc.png", b"png")
    put(s3, f"s3://{MODELS}/out/evaluation-other/x", b"not mine")
    assert plane.download(f"s3://{MODELS}/out/eval", tmp_path / "a") == 2
    assert sorted(
        p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.*")
    ) == [
        "metrics.json",
        "plots/roc.png",
    ]
    assert plane.download(f"s3://{MODELS}/out/eval/metrics.json", tmp_path / "b") == 1
    assert (tmp_path / "b" / "metrics.json").read_text() == "{}"
    with pytest.raises(JobOutputMissingError, match="Nothing at"):
        plane.download(f"s3://{MODELS}/nothing", tmp_path / "c")


def test_the_newest_model_archive_under_a_prefix_wins(plane: S3DataPlane, s3: Any) -> None:
    prefix = f"s3://{MODELS}/runs/r/train/model"
    put(s3, f"{prefix}/job/output/model.tar.gz", b"first attempt")
    time.sleep(1.1)  # S3 LastModified has one-second resolution
    put(s3, f"{prefix}/job-a2/output/model.tar.gz", b"second attempt")
    put(s3, f"{prefix}/job-a2/output/output.tar.gz", b"not a model")
    assert (
        plane.model_archive_uri(prefix, staging_name="x") == f"{prefix}/job-a2/output/model.tar.gz"
    )
    assert plane.model_archive_uri(f"{prefix}/job/output/model.tar.gz", staging_name="x").endswith(
        "/job/output/model.tar.gz"
    )
    with pytest.raises(JobOutputMissingError, match="No model archive at"):
        plane.model_archive_uri(f"{prefix}/absent/model.tar.gz", staging_name="x")


def test_a_local_model_folder_is_packed_by_artifacts_and_uploaded(
    plane: S3DataPlane, s3: Any, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    spec = ModelSpec(
        architecture="resnet50", image_size=96, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6)
    )
    spec.write(model_dir)
    (model_dir / "model.pt").write_bytes(b"weights")
    uri = plane.model_archive_uri(str(model_dir), staging_name="reg-1")
    assert uri == f"s3://{MODELS}/staging/reg-1/model/model.tar.gz"
    archive = tmp_path / "fetched.tar.gz"
    s3.download_file(MODELS, "staging/reg-1/model/model.tar.gz", str(archive))
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["model.json", "model.pt"]  # contents, not the folder
    assert ModelSpec.read(unpack_model(archive, tmp_path / "unpacked")) == spec


def test_a_local_folder_holding_an_archive_is_uploaded_as_is(
    plane: S3DataPlane, s3: Any, tmp_path: Path
) -> None:
    (tmp_path / "artifact").mkdir()
    (tmp_path / "artifact" / "model.tar.gz").write_bytes(b"gz")
    uri = plane.model_archive_uri(str(tmp_path / "artifact"), staging_name="reg-2")
    assert uri == f"s3://{MODELS}/staging/reg-2/model/model.tar.gz"
    with pytest.raises(JobOutputMissingError, match="holds no model"):
        plane.model_archive_uri(str(tmp_path / "empty-dir-that-is-missing"), staging_name="reg-3")
