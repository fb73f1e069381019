"""Endpoint data capture in SageMaker's format: a writer for the local endpoint, one reader for both.

SageMaker's DataCaptureConfig writes JSON lines to
``s3://<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl``, one line per sampled
request::

    {"captureData": {
        "endpointInput":  {"observedContentType": "image/jpeg", "mode": "INPUT",
                           "data": "<base64>", "encoding": "BASE64"},
        "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                           "data": "{...}", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceTime": "2024-05-01T12:00:00.123Z"},
     "eventVersion": "0"}

Payloads whose content type is JSON (or CSV) are stored as text with encoding ``JSON`` (``CSV``),
everything else base64-encoded with encoding ``BASE64``, as SageMaker does when the endpoint's
CaptureContentTypeHeader lists the JSON types. :class:`CaptureWriter` writes the same layout
under a local folder, off the request path; :func:`iter_capture_records` reads a local folder or
an ``s3://`` prefix and yields :class:`CaptureRecord` values with the payloads decoded.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import queue
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

EVENT_VERSION = "0"
DEFAULT_VARIANT = "AllTraffic"  # the variant name SageMaker's examples and our backends use
# Champion and challenger: the champion keeps the name its alarms, dashboards, autoscaling and
# drift monitor watch; the challenger is a second variant beside it.
CHAMPION_VARIANT = DEFAULT_VARIANT
CHALLENGER_VARIANT = "Challenger"
# The response header that names the variant that answered (SageMaker's InvokeEndpoint sets it).
VARIANT_HEADER = "x-amzn-invoked-production-variant"
ENCODINGS = ("BASE64", "JSON", "CSV")
_JSON_TYPES = ("application/json", "text/json")
_CSV_TYPES = ("text/csv",)


class CaptureFormatError(ValueError):
    """A capture line is not in SageMaker's data capture format; the message says where and why."""


@dataclass(frozen=True)
class CaptureRecord:
    """One captured request, payloads decoded to bytes."""

    event_id: str
    inference_time: datetime
    input_content_type: str
    input_data: bytes
    output_content_type: str
    output_data: bytes
    inference_id: str = ""
    source: str = ""  # file path or s3:// URI plus line number, for error messages

    def output_json(self) -> Any:
        """The response body parsed as JSON (the serving app always answers JSON)."""
        return json.loads(self.output_data)


# --- encoding -------------------------------------------------------------------------------


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def encoding_for(content_type: str) -> str:
    """The encoding SageMaker records for a payload of ``content_type`` (JSON, CSV or BASE64)."""
    media = _media_type(content_type)
    if media in _JSON_TYPES or media.endswith("+json"):
        return "JSON"
    if media in _CSV_TYPES:
        return "CSV"
    return "BASE64"


def encode_payload(data: bytes, content_type: str, mode: str) -> dict[str, str]:
    """The ``endpointInput``/``endpointOutput`` object for one payload."""
    encoding = encoding_for(content_type)
    if encoding != "BASE64":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # A body labelled JSON that is not even UTF-8 is kept byte-exact.
            encoding = "BASE64"
    if encoding == "BASE64":
        text = base64.b64encode(data).decode("ascii")
    return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}


def decode_payload(payload: dict[str, Any], where: str) -> tuple[str, bytes]:
    """``(content type, bytes)`` of an ``endpointInput``/``endpointOutput`` object."""
    try:
        encoding = str(payload.get("encoding", "BASE64")).upper()
        data = payload["data"]
        content_type = str(payload.get("observedContentType", ""))
    except (AttributeError, KeyError) as error:
        raise CaptureFormatError(f"{where}: payload has no {error} field.") from None
    if not isinstance(data, str):
        raise CaptureFormatError(f"{where}: payload data must be a string, got {type(data)}.")
    if encoding == "BASE64":
        try:
            return content_type, base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as error:
            raise CaptureFormatError(f"{where}: invalid base64 data ({error}).") from None
    if encoding in ENCODINGS:
        return content_type, data.encode("utf-8")
    raise CaptureFormatError(
        f"{where}: unknown encoding {encoding!r}. Accepted: {', '.join(ENCODINGS)}."
    )


def format_inference_time(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``, as SageMaker writes ``inferenceTime``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_inference_time(text: str) -> datetime:
    """Parse ``inferenceTime`` (with or without fractional seconds) to an aware UTC datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def make_capture_line(
    input_data: bytes,
    input_content_type: str,
    output_data: bytes,
    output_content_type: str,
    *,
    event_id: str | None = None,
    inference_time: datetime | None = None,
    inference_id: str = "",
) -> dict[str, Any]:
    """One capture record as SageMaker writes it (a dict; ``json.dumps`` it for the line)."""
    metadata: dict[str, str] = {
        "eventId": event_id or str(uuid.uuid4()),
        "inferenceTime": format_inference_time(inference_time or datetime.now(UTC)),
    }
    if inference_id:
        metadata["inferenceId"] = inference_id
    return {
        "captureData": {
            "endpointInput": encode_payload(input_data, input_content_type, "INPUT"),
            "endpointOutput": encode_payload(output_data, output_content_type, "OUTPUT"),
        },
        "eventMetadata": metadata,
        "eventVersion": EVENT_VERSION,
    }


def parse_capture_line(line: str | bytes, where: str = "") -> CaptureRecord:
    """Parse one JSON line of a capture file into a :class:`CaptureRecord`."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as error:
        raise CaptureFormatError(f"{where}: not JSON ({error}).") from None
    try:
        capture = raw["captureData"]
        metadata = raw["eventMetadata"]
        input_type, input_data = decode_payload(capture["endpointInput"], f"{where} endpointInput")
        output_type, output_data = decode_payload(
            capture["endpointOutput"], f"{where} endpointOutput"
        )
        event_id = str(metadata["eventId"])
        inference_time = parse_inference_time(str(metadata["inferenceTime"]))
    except (KeyError, TypeError) as error:
        raise CaptureFormatError(
            f"{where}: missing {error} (expected captureData.endpointInput/endpointOutput and "
            "eventMetadata.eventId/inferenceTime)."
        ) from None
    except ValueError as error:
        if isinstance(error, CaptureFormatError):
            raise
        raise CaptureFormatError(f"{where}: invalid inferenceTime ({error}).") from None
    return CaptureRecord(
        event_id=event_id,
        inference_time=inference_time,
        input_content_type=input_type,
        input_data=input_data,
        output_content_type=output_type,
        output_data=output_data,
        inference_id=str(metadata.get("inferenceId", "")),
        source=where,
    )


# --- writing --------------------------------------------------------------------------------


def capture_prefix(root: Path, endpoint_name: str, variant_name: str, moment: datetime) -> Path:
    """``root/<endpoint>/<variant>/yyyy/mm/dd/hh``: the folder of one hour's capture files."""
    moment = moment.astimezone(UTC)
    return Path(root) / endpoint_name / variant_name / moment.strftime("%Y/%m/%d/%H")


HOUR_FOLDER = "%Y/%m/%d/%H"


def window_hour_folders(start: datetime, end: datetime) -> list[str]:
    """``yyyy/mm/dd/hh`` of every hour that overlaps [start, end) (UTC), oldest first."""
    hours: list[str] = []
    if end <= start:
        return hours
    moment = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while moment < end:
        hours.append(moment.strftime(HOUR_FOLDER))
        moment += timedelta(hours=1)
    return hours


def hour_folder_in_window(relative: str, start: datetime | None, end: datetime | None) -> bool:
    """Whether a capture file's path below ``<endpoint>/<variant>/`` lies in an hour folder that
    overlaps [start, end); every file does for an unbounded window."""
    if start is None or end is None:
        return True
    parts = relative.strip("/").split("/")
    if len(parts) < 5:  # yyyy/mm/dd/hh/<file>
        return False
    try:
        hour = datetime.strptime("/".join(parts[:4]), HOUR_FOLDER).replace(tzinfo=UTC)
    except ValueError:
        return False
    return hour + timedelta(hours=1) > start and hour < end


@dataclass
class CaptureStats:
    """Counters of a :class:`CaptureWriter` (read them for logs and tests)."""

    offered: int = 0
    sampled: int = 0
    written: int = 0
    dropped: int = 0  # the queue was full: capture never slows a request down
    failed: int = 0
    files: list[str] = field(default_factory=list)


_STOP = object()


class CaptureWriter:
    """Writes sampled request/response pairs to hourly JSON-lines files on a background thread.

    ``capture()`` only samples and enqueues, so it never blocks the request path; when the queue
    is full the record is dropped and counted. ``close()`` drains the queue and closes the file.
    """

    def __init__(
        self,
        root: Path,
        *,
        endpoint_name: str = "local",
        variant_name: str = DEFAULT_VARIANT,
        sampling_percentage: float = 100.0,
        max_queue: int = 1024,
        seed: int | None = None,
    ):
        if not 0 <= sampling_percentage <= 100:
            raise ValueError(
                f"Invalid sampling_percentage {sampling_percentage!r}: must be in [0, 100]."
            )
        for name, value in (("endpoint_name", endpoint_name), ("variant_name", variant_name)):
            if not value or "/" in value or value in (".", ".."):
                raise ValueError(f"Invalid {name} {value!r}: a non-empty name without '/'.")
        self.root = Path(root)
        self.endpoint_name = endpoint_name
        self.variant_name = variant_name
        self.sampling_percentage = float(sampling_percentage)
        self.stats = CaptureStats()
        self._random = random.Random(seed)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._handle: IO[str] | None = None
        self._hour: str = ""
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def capture(
        self,
        input_data: bytes,
        input_content_type: str,
        output_data: bytes,
        output_content_type: str,
        *,
        event_id: str | None = None,
        inference_time: datetime | None = None,
    ) -> bool:
        """Sample and enqueue one request; True when it was queued for writing."""
        self.stats.offered += 1
        if self._random.random() * 100.0 >= self.sampling_percentage:
            return False
        self.stats.sampled += 1
        item = (
            input_data,
            input_content_type,
            output_data,
            output_content_type,
            event_id or str(uuid.uuid4()),
            inference_time or datetime.now(UTC),
        )
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped += 1
            return False
        return True

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written and flushed to disk."""
        done = threading.Event()
        self._queue.put(done, timeout=timeout)
        if not done.wait(timeout):
            raise TimeoutError(f"Capture writer did not flush within {timeout} s.")

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, close the current file and stop the thread."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)

    def _file_for(self, moment: datetime) -> IO[str]:
        moment = moment.astimezone(UTC)
        hour = moment.strftime("%Y%m%d%H")
        if self._handle is None or hour != self._hour:
            if self._handle is not None:
                self._handle.close()
            folder = capture_prefix(self.root, self.endpoint_name, self.variant_name, moment)
            folder.mkdir(parents=True, exist_ok=True)
            # SageMaker names files <minute>-<second>-<millisecond>-<uuid>.jsonl.
            stamp = moment.strftime("%M-%S-") + f"{moment.microsecond // 1000:03d}"
            path = folder / f"{stamp}-{uuid.uuid4()}.jsonl"
            self._handle = path.open("a", encoding="utf-8")
            self._hour = hour
            self.stats.files.append(str(path))
        return self._handle

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if isinstance(item, threading.Event):
                if self._handle is not None:
                    self._handle.flush()
                item.set()
                continue
            try:
                self._write(item)
            except (OSError, ValueError) as error:
                self.stats.failed += 1
                log.warning("Could not write a capture record: %s", error)
            if self._queue.empty() and self._handle is not None:
                self._handle.flush()
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _write(self, item: tuple[bytes, str, bytes, str, str, datetime]) -> None:
        input_data, input_type, output_data, output_type, event_id, moment = item
        record = make_capture_line(
            input_data,
            input_type,
            output_data,
            output_type,
            event_id=event_id,
            inference_time=moment,
        )
        handle = self._file_for(moment)
        handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.stats.written += 1


# --- reading --------------------------------------------------------------------------------


def _in_window(record: CaptureRecord, start: datetime | None, end: datetime | None) -> bool:
    if start is not None and record.inference_time < start:
        return False
    return end is None or record.inference_time < end


def _iter_lines(lines: Iterator[str], where: str) -> Iterator[CaptureRecord]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield parse_capture_line(line, f"{where}:{number}")


def _iter_local(root: Path) -> Iterator[CaptureRecord]:
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(root.rglob("*.jsonl"))
    else:
        raise FileNotFoundError(
            f"No capture data at {root}: expected a folder of .jsonl files, one .jsonl file, "
            "or an s3:// prefix."
        )
    for path in files:
        with path.open(encoding="utf-8") as handle:
            yield from _iter_lines(iter(handle), str(path))


def _iter_s3(uri: str, s3_client: Any) -> Iterator[CaptureRecord]:
    from skinlesion.storage import split_s3

    bucket, prefix = split_s3(uri)
    if s3_client is None:
        raise ValueError(
            f"Reading capture data from {uri} needs an S3 client: pass s3_client (one of "
            "skinlesion.aws.AwsClients), or copy the capture files to a local folder first."
        )
    keys: list[str] = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    # Keys sort by endpoint/variant/yyyy/mm/dd/hh/mm-ss-ms: chronological within a variant.
    for key in sorted(k for k in keys if k.endswith(".jsonl")):
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"]
        lines = (raw.decode("utf-8") for raw in body.iter_lines())
        yield from _iter_lines(lines, f"s3://{bucket}/{key}")


def iter_capture_records(
    source: str | Path,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    s3_client: Any = None,
) -> Iterator[CaptureRecord]:
    """Yield every capture record under ``source``: a local folder or file, or an s3:// prefix.

    ``start``/``end`` (aware datetimes) keep records with ``start <= inferenceTime < end``.
    ``s3_client`` reads an s3:// prefix (required for one).
    """
    text = str(source)
    if text.startswith("s3://"):
        records = _iter_s3(text, s3_client)
    else:
        from skinlesion.storage import local_path

        records = _iter_local(local_path(text))
    for record in records:
        if _in_window(record, start, end):
            yield record
