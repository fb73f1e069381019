"""Capture files in SageMaker's format, round-tripped through the capture module, as a
monitoring window: images split out of each request, decoded, paired with the answers."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from skinlesion.capture import CaptureWriter, iter_capture_records
from skinlesion.labels import CLASSES
from skinlesion.monitoring.features import RAW_FEATURES
from skinlesion.monitoring.window import load_window

T0 = datetime(2024, 5, 1, 9, tzinfo=UTC)


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def answer(*classes: str) -> bytes:
    return json.dumps({"predictions": [{"top_class": c} for c in classes]}).encode()


def write_capture(root: Path) -> dict[str, bytes]:
    """Four requests: a JPEG body, a JSON body of two images, JSON without one, a broken image."""
    bodies = {
        "jpeg": jpeg((200, 40, 40)),
        "json": json.dumps(
            {
                "instances": [
                    {"b64": base64.b64encode(jpeg((0, 0, 255), (30, 30))).decode()},
                    {"b64": base64.b64encode(jpeg((0, 255, 0))).decode()},
                ]
            }
        ).encode(),
        "text": b'{"text": "hello"}',
        "broken": jpeg((1, 2, 3))[:40],
    }
    writer = CaptureWriter(root, endpoint_name="ep")
    types = {"json": "application/json", "text": "application/json"}
    answers = {"jpeg": answer("MEL"), "json": answer("NV", "BCC"), "text": b"{}",
               "broken": answer("AK")}  # fmt: skip
    for number, (event_id, body) in enumerate(bodies.items()):
        writer.capture(
            body,
            types.get(event_id, "image/jpeg"),
            answers[event_id],
            "application/json",
            event_id=event_id,
            inference_time=T0 + timedelta(minutes=10 * number),
        )
    writer.close()
    return bodies


def test_capture_files_round_trip_in_sagemakers_layout(tmp_path: Path) -> None:
    bodies = write_capture(tmp_path)
    [path] = list(tmp_path.rglob("*.jsonl"))
    assert path.relative_to(tmp_path).parts[:6] == ("ep", "AllTraffic", "2024", "05", "01", "09")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert lines[1]["captureData"]["endpointInput"]["encoding"] == "JSON"
    assert lines[0]["captureData"]["endpointOutput"]["encoding"] == "JSON"
    assert lines[0]["eventMetadata"]["eventId"] == "jpeg"
    records = list(iter_capture_records(tmp_path))
    assert [r.event_id for r in records] == list(bodies)
    assert [r.input_data for r in records] == list(bodies.values())
    assert records[1].output_json()["predictions"][1]["top_class"] == "BCC"
    window = list(iter_capture_records(tmp_path, start=T0 + timedelta(minutes=5),
                                       end=T0 + timedelta(minutes=25)))  # fmt: skip
    assert [r.event_id for r in window] == ["json", "text"]


def test_a_window_splits_requests_into_images_with_their_answers(tmp_path: Path) -> None:
    write_capture(tmp_path)
    window = load_window(str(tmp_path), image_size=16, classes=CLASSES)
    assert window.records == 4
    assert window.event_ids == ["jpeg", "json", "json"]
    assert window.image_index == [0, 0, 1]
    assert [CLASSES[i] for i in window.captured_predictions] == ["MEL", "NV", "BCC"]
    assert window.images.shape == (3, 16, 16, 3) and window.images.dtype == np.uint8
    assert window.images[0, 8, 8, 0] > 150 and window.images[1, 8, 8, 2] > 150
    assert window.unreadable == 1  # the truncated JPEG
    assert window.skipped == {"request body holds no image": 1}
    raw = dict(zip(RAW_FEATURES, window.raw[0], strict=True))
    assert raw["width"] == 40 and raw["height"] == 30
    assert raw["aspect_ratio"] == 40 / 30 and raw["bits_per_pixel"] > 0
    summary = window.summary()
    assert summary["first_inference_time"] == T0.isoformat()
    assert summary["unreadable_images"] == 1


def test_an_answer_that_does_not_match_the_images_counts_as_unknown(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path, endpoint_name="ep")
    writer.capture(jpeg((9, 9, 9)), "image/jpeg", answer("MEL", "NV"), "application/json",
                   inference_time=T0)  # fmt: skip
    writer.capture(jpeg((9, 9, 9)), "image/jpeg", b"not json", "application/json",
                   inference_time=T0)  # fmt: skip
    writer.close()
    window = load_window(str(tmp_path), image_size=16, classes=CLASSES)
    assert list(window.captured_predictions) == [-1, -1]
