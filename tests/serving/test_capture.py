"""SageMaker data capture: the exact line format, the folder layout, sampling, and the reader."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from skinlesion.capture import (
    CaptureFormatError,
    CaptureWriter,
    iter_capture_records,
    make_capture_line,
    parse_capture_line,
)

MOMENT = datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)


def test_line_has_sagemakers_exact_fields() -> None:
    line = make_capture_line(
        b"\xff\xd8\xffjpeg",
        "image/jpeg",
        b'{"top_class": "NV"}',
        "application/json",
        event_id="4651a1bf-4b00-4248-a309-4a18b11e4277",
        inference_time=MOMENT,
    )
    assert line == {
        "captureData": {
            "endpointInput": {
                "observedContentType": "image/jpeg",
                "mode": "INPUT",
                "data": base64.b64encode(b"\xff\xd8\xffjpeg").decode(),
                "encoding": "BASE64",
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": '{"top_class": "NV"}',
                "encoding": "JSON",
            },
        },
        "eventMetadata": {
            "eventId": "4651a1bf-4b00-4248-a309-4a18b11e4277",
            "inferenceTime": "2024-05-01T12:34:56.789Z",
        },
        "eventVersion": "0",
    }


def test_json_input_is_text_and_non_utf8_json_falls_back_to_base64() -> None:
    text = make_capture_line(
        b'{"image": "abc"}', "application/json; charset=utf-8", b"{}", "application/json"
    )
    assert text["captureData"]["endpointInput"]["encoding"] == "JSON"
    assert text["captureData"]["endpointInput"]["data"] == '{"image": "abc"}'
    binary = make_capture_line(b"\xff\xfe", "application/json", b"{}", "application/json")
    assert binary["captureData"]["endpointInput"]["encoding"] == "BASE64"
    record = parse_capture_line(json.dumps(binary))
    assert record.input_data == b"\xff\xfe"


def test_parse_reads_what_sagemaker_writes() -> None:
    # A line as a SageMaker endpoint writes it (no milliseconds, CSV input, BASE64 output).
    raw = {
        "captureData": {
            "endpointInput": {
                "observedContentType": "text/csv",
                "mode": "INPUT",
                "data": "1,2,3",
                "encoding": "CSV",
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": base64.b64encode(b'{"p": 1}').decode(),
                "encoding": "BASE64",
            },
        },
        "eventMetadata": {
            "eventId": "8f45e35c-fa44-40d2-8ed3-1bcab3a596f3",
            "inferenceTime": "2020-07-30T13:36:30Z",
            "inferenceId": "client-42",
        },
        "eventVersion": "0",
    }
    record = parse_capture_line(json.dumps(raw), "x.jsonl:1")
    assert record.input_data == b"1,2,3"
    assert record.output_json() == {"p": 1}
    assert record.inference_time == datetime(2020, 7, 30, 13, 36, 30, tzinfo=UTC)
    assert record.inference_id == "client-42"
    assert record.event_id == "8f45e35c-fa44-40d2-8ed3-1bcab3a596f3"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('{"eventMetadata": {}}', "missing"),
        (
            '{"captureData": {"endpointInput": {"data": "%%%", "encoding": "BASE64"},'
            ' "endpointOutput": {"data": "", "encoding": "JSON"}},'
            ' "eventMetadata": {"eventId": "e", "inferenceTime": "2024-01-01T00:00:00Z"}}',
            "invalid base64",
        ),
        (
            '{"captureData": {"endpointInput": {"data": "", "encoding": "ROT13"},'
            ' "endpointOutput": {"data": "", "encoding": "JSON"}},'
            ' "eventMetadata": {"eventId": "e", "inferenceTime": "2024-01-01T00:00:00Z"}}',
            "unknown encoding",
        ),
        (
            '{"captureData": {"endpointInput": {"data": "", "encoding": "JSON"},'
            ' "endpointOutput": {"data": "", "encoding": "JSON"}},'
            ' "eventMetadata": {"eventId": "e", "inferenceTime": "yesterday"}}',
            "invalid inferenceTime",
        ),
    ],
)
def test_parse_rejects_malformed_lines_with_the_place(line: str, message: str) -> None:
    with pytest.raises(CaptureFormatError, match=message) as error:
        parse_capture_line(line, "f.jsonl:7")
    assert "f.jsonl:7" in str(error.value)


def test_writer_round_trip_with_hourly_layout(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path, endpoint_name="ep", variant_name="AllTraffic")
    sent = []
    for hour in (0, 0, 1):
        moment = MOMENT + timedelta(hours=hour, seconds=len(sent))
        body = f"image-{len(sent)}".encode()
        assert writer.capture(
            body, "image/png", b'{"n": 1}', "application/json", inference_time=moment
        )
        sent.append((body, moment))
    writer.close()

    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jsonl"))
    assert [f.rsplit("/", 1)[0] for f in files] == [
        "ep/AllTraffic/2024/05/01/12",
        "ep/AllTraffic/2024/05/01/13",
    ]
    assert all(Path(f).name.count("-") >= 7 for f in files)  # mm-ss-mmm-<uuid>.jsonl
    records = list(iter_capture_records(tmp_path))
    assert [(r.input_data, r.inference_time) for r in records] == sent
    assert {r.input_content_type for r in records} == {"image/png"}
    assert [r.output_json() for r in records] == [{"n": 1}] * 3
    assert len({r.event_id for r in records}) == 3
    window = list(iter_capture_records(tmp_path, start=MOMENT + timedelta(minutes=30)))
    assert [r.input_data for r in window] == [b"image-2"]
    assert writer.stats.written == 3 and writer.stats.dropped == 0


@pytest.mark.parametrize(("percentage", "expected"), [(0, 0), (100, 200)])
def test_sampling_extremes(tmp_path: Path, percentage: float, expected: int) -> None:
    writer = CaptureWriter(tmp_path, sampling_percentage=percentage, seed=1)
    for _ in range(200):
        writer.capture(b"x", "image/jpeg", b"{}", "application/json")
    writer.close()
    assert len(list(tmp_path.rglob("*.jsonl"))) == (1 if expected else 0)
    assert len(list(iter_capture_records(tmp_path))) == expected
    assert writer.stats.sampled == expected


def test_sampling_percentage_is_honoured(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path, sampling_percentage=25, seed=7)
    for _ in range(2000):
        writer.capture(b"x", "image/jpeg", b"{}", "application/json")
    writer.close()
    assert 400 <= len(list(iter_capture_records(tmp_path))) <= 600


def test_writer_validates_its_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sampling_percentage"):
        CaptureWriter(tmp_path, sampling_percentage=101)
    with pytest.raises(ValueError, match="endpoint_name"):
        CaptureWriter(tmp_path, endpoint_name="a/b")


def test_reader_names_a_missing_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="s3://"):
        list(iter_capture_records(tmp_path / "nothing"))


@pytest.mark.aws
def test_reader_pages_through_s3(moto_endpoint: str, tmp_path: Path) -> None:
    import boto3

    writer = CaptureWriter(tmp_path, endpoint_name="ep")
    for index in range(5):
        moment = MOMENT + timedelta(hours=index)
        writer.capture(
            f"img{index}".encode(), "image/jpeg", b"{}", "application/json", inference_time=moment
        )
    writer.close()
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="capture")
    for path in tmp_path.rglob("*.jsonl"):
        s3.upload_file(str(path), "capture", f"datacapture/{path.relative_to(tmp_path).as_posix()}")
    s3.put_object(Bucket="capture", Key="datacapture/ep/README.txt", Body=b"not capture")

    class SmallPages:
        """The real client, but two keys a page, so that paging is exercised."""

        def __init__(self, client: object):
            self.client = client

        def get_paginator(self, name: str) -> object:
            paginator = self.client.get_paginator(name)  # type: ignore[attr-defined]

            class Pages:
                def paginate(self, **kwargs: object) -> object:
                    return paginator.paginate(**kwargs, PaginationConfig={"PageSize": 2})

            return Pages()

        def get_object(self, **kwargs: object) -> object:
            return self.client.get_object(**kwargs)  # type: ignore[attr-defined]

    records = list(iter_capture_records("s3://capture/datacapture/ep", s3_client=SmallPages(s3)))
    assert [r.input_data for r in records] == [f"img{i}".encode() for i in range(5)]
    assert records[0].source.startswith("s3://capture/datacapture/ep/AllTraffic/2024/05/01/12/")
