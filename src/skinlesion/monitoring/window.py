"""A monitoring window: the captured requests of a time range, as images and predictions.

Each capture record (read with :func:`skinlesion.capture.iter_capture_records`, local folder or
s3://) is split into its images exactly as the serving app splits a request body (one image
body, or a JSON body with several), each image decoded with the preprocess job's geometry, and
paired with the prediction the endpoint answered for it. Requests or images that cannot be read
are counted, not fatal: a window of damaged traffic is itself worth reporting.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from skinlesion.capture import CaptureRecord, iter_capture_records
from skinlesion.monitoring.features import RAW_FEATURES, raw_features

log = logging.getLogger(__name__)


@dataclass
class Window:
    """The images of a window and what the endpoint said about each."""

    images: np.ndarray  # (n, S, S, 3) uint8
    raw: np.ndarray  # (n, len(RAW_FEATURES)) encoding features of each image as received
    event_ids: list[str]  # per image: its request's eventId
    image_index: list[int]  # per image: its position in the request
    captured_predictions: np.ndarray  # (n,) class index the endpoint answered, -1 if unknown
    refused: int = 0  # images the endpoint answered "assessable": false (no diagnosis)
    records: int = 0  # capture records read
    unreadable: int = 0  # images that could not be decoded
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> records left out
    first_time: datetime | None = None
    last_time: datetime | None = None

    def __len__(self) -> int:
        return len(self.event_ids)

    @property
    def attempted(self) -> int:
        """Images found in the window's requests, read or not."""
        return len(self) + self.unreadable

    def summary(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "images": len(self),
            "unreadable_images": self.unreadable,
            "refused_images": self.refused,
            "refused_fraction": self.refused / len(self) if len(self) else None,
            "skipped_records": dict(self.skipped),
            "first_inference_time": self.first_time.isoformat() if self.first_time else None,
            "last_inference_time": self.last_time.isoformat() if self.last_time else None,
        }


def _encoded_images(record: CaptureRecord) -> list[bytes]:
    from skinlesion.serving.requests import (
        CONTENT_TYPES,
        ImageLimits,
        media_type,
        split_images,
    )

    kind = media_type(record.input_content_type)
    if kind not in CONTENT_TYPES:
        # SageMaker records the observed type; a client that sent none gets the raw body.
        kind = "image/jpeg"
    return split_images(record.input_data, kind, ImageLimits(max_images=10_000))


def _predicted_classes(record: CaptureRecord, count: int, classes: Sequence[str]) -> list[int]:
    lookup = {c: i for i, c in enumerate(classes)}
    try:
        predictions = record.output_json()["predictions"]
        # A refused image ("assessable": false) has no top_class: -1, like an unknown one.
        codes = [lookup.get(str(p.get("top_class")), -1) for p in predictions]
    except (ValueError, KeyError, TypeError):
        return [-1] * count
    return codes if len(codes) == count else [-1] * count


def _refused(record: CaptureRecord) -> list[bool]:
    """Per image of the record: did the endpoint refuse it (``"assessable": false``)?"""
    try:
        return [p.get("assessable") is False for p in record.output_json()["predictions"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def build_window(
    records: Iterable[CaptureRecord],
    *,
    image_size: int,
    classes: Sequence[str],
    max_images: int = 0,
) -> Window:
    """Decode the images of ``records`` at ``image_size``; ``max_images`` > 0 stops early."""
    from skinlesion.data.images import DECODE_ERRORS, decode_image_bytes
    from skinlesion.serving.requests import RequestError

    images: list[np.ndarray] = []
    raw: list[np.ndarray] = []
    event_ids: list[str] = []
    image_index: list[int] = []
    predicted: list[int] = []
    skipped: Counter[str] = Counter()
    unreadable = 0
    refused = 0
    count = 0
    first: datetime | None = None
    last: datetime | None = None
    for record in records:
        count += 1
        first = record.inference_time if first is None else min(first, record.inference_time)
        last = record.inference_time if last is None else max(last, record.inference_time)
        try:
            encoded = _encoded_images(record)
        except RequestError as error:
            skipped["request body holds no image"] += 1
            log.debug("%s: %s", record.source, error.error)
            continue
        codes = _predicted_classes(record, len(encoded), classes)
        refusals = _refused(record)
        for index, data in enumerate(encoded):
            try:
                array = decode_image_bytes(data, image_size)
                features = raw_features(data)
            except (*DECODE_ERRORS, ValueError) as error:
                unreadable += 1
                log.debug("%s image %d: %s", record.source, index, error)
                continue
            images.append(array)
            raw.append(features)
            event_ids.append(record.event_id)
            image_index.append(index)
            predicted.append(codes[index])
            refused += bool(index < len(refusals) and refusals[index])
        if max_images and len(images) >= max_images:
            break
    window = Window(
        images=np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8),
        raw=np.stack(raw) if raw else np.zeros((0, len(RAW_FEATURES))),
        event_ids=event_ids,
        image_index=image_index,
        captured_predictions=np.asarray(predicted, dtype=np.int64),
        records=count,
        unreadable=unreadable,
        refused=refused,
        skipped=dict(skipped),
        first_time=first,
        last_time=last,
    )
    log.info(
        "Window: %d capture records, %d images, %d unreadable%s",
        count,
        len(window),
        unreadable,
        f", skipped {dict(skipped)}" if skipped else "",
    )
    return window


def load_window(
    source: str,
    *,
    image_size: int,
    classes: Sequence[str],
    start: datetime | None = None,
    end: datetime | None = None,
    max_images: int = 0,
    s3_client: Any = None,
) -> Window:
    """The window of capture records under ``source`` (folder, file or s3://) in [start, end)."""
    records = iter_capture_records(source, start=start, end=end, s3_client=s3_client)
    return build_window(records, image_size=image_size, classes=classes, max_images=max_images)
