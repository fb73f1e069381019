"""Batch scoring: a folder (or S3 prefix) of JPEG images through the serving code, one JSON line
per image.

Both backends send each image, alone, to the inference app's ``POST /invocations`` as
``image/jpeg``, the way SageMaker Batch Transform does with ``SplitType=None`` (locally the app is
called in-process; on SageMaker the transform job calls the container), and both turn each
response into the same line: the image name, the class probabilities, the predicted class, the
operating-point decision ``refer`` when the response carries it, and the model version.

Patient metadata: locally, a ``metadata.csv`` at the top of the images folder (ISIC's columns:
``image`` = the file's stem, ``age_approx``, ``sex``, ``anatom_site``, with the preprocess job's
column aliases) sends each image that has a row as JSON with its ``metadata``; an image without
a row goes alone, as ``image/jpeg``. The SageMaker transform path stays image-only (Batch
Transform sends each S3 object as it is); a metadata.csv under its prefix is refused by name.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import logging
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"
IMAGE_CONTENT_TYPE = "image/jpeg"
JSON_CONTENT_TYPE = "application/json"
METADATA_FILE = "metadata.csv"  # beside the images (local batch scoring only)
JPEG_SUFFIXES = (".jpg", ".jpeg")
# Batch Transform writes the response to each input object as <output path>/<object name>.out.
TRANSFORM_SUFFIX = ".out"


class BatchInputError(ValueError):
    """The batch's input is not a non-empty set of JPEG images; the message says what was found."""


class BatchScoringError(RuntimeError):
    """The serving code refused an image; the message names the image and its answer."""


def check_image_names(names: Iterable[str], where: str) -> list[str]:
    """The names sorted, or ``BatchInputError`` when there are none or any is not a JPEG."""
    found = sorted(names)
    if not found:
        raise BatchInputError(
            f"No images under {where}: expected JPEG files ({', '.join(JPEG_SUFFIXES)})."
        )
    others = [n for n in found if not n.lower().endswith(JPEG_SUFFIXES)]
    if METADATA_FILE in others:
        raise BatchInputError(
            f"{where} holds {METADATA_FILE}: patient metadata is read by local batch scoring only; "
            "SageMaker Batch Transform sends each image alone (image-only). Move it out of the "
            "input, or score locally (docs/sagemaker.md, Batch scoring)."
        )
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise BatchInputError(
            f"{len(others)} files under {where} are not JPEG images ({shown}); batch scoring "
            f"accepts only {', '.join(JPEG_SUFFIXES)} files (image/jpeg), so none is skipped "
            "silently: move them out of the input."
        )
    return found


def local_images(folder: Path) -> list[Path]:
    """The JPEG files of a local folder (recursively), checked by ``check_image_names``."""
    if not folder.is_dir():
        raise BatchInputError(f"Batch input {folder} is not a folder of JPEG images.")
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    files.pop(METADATA_FILE, None)  # the images' patient metadata, read by read_metadata_csv
    return [files[name] for name in check_image_names(files, str(folder))]


def read_metadata_csv(path: Path, names: Iterable[str]) -> dict[str, dict[str, str]]:
    """``image name -> {age_approx, sex, anatom_site}`` from ``path`` for the batch's ``names``.

    ``image`` is the file's stem (ISIC's convention). A row naming no image of the batch, a row
    without an image, an image named twice, or a file without an ``image`` column or any field
    column is a ``BatchInputError``; values are checked by the serving app (a bad one is a 400
    that names the image). Images without a row are sent without metadata.
    """
    from skinlesion.jobs.preprocess import METADATA_ALIASES

    by_stem: dict[str, list[str]] = {}
    for name in names:
        by_stem.setdefault(Path(name).stem, []).append(name)
    out: dict[str, dict[str, str]] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        found = {
            field: next((c for c in aliases if c in columns), None)
            for field, aliases in METADATA_ALIASES.items()
        }
        accepted = "a CSV with an image column (the file's stem) and any of " + ", ".join(
            f"{k} ({' or '.join(v)})" for k, v in METADATA_ALIASES.items()
        )
        if "image" not in columns or not any(found.values()):
            raise BatchInputError(f"{path} has the columns {columns}; expected {accepted}.")
        for number, row in enumerate(reader, start=2):
            stem = (row.get("image") or "").strip()
            matches = by_stem.get(stem, [])
            if len(matches) != 1:
                what = "no image" if not stem else f"image {stem!r}"
                problem = "matches no" if not matches else f"matches {len(matches)}"
                raise BatchInputError(
                    f"{path} line {number} names {what}, which {problem} JPEG of the batch "
                    f"({', '.join(matches) or 'none'}); each row names one image by its stem."
                )
            if matches[0] in out:
                raise BatchInputError(f"{path} line {number} names {stem!r} a second time.")
            out[matches[0]] = {
                field: (row.get(column) or "").strip() for field, column in found.items() if column
            }
    log.info("Read patient metadata for %d images from %s", len(out), path)
    return out


def prediction_line(image: str, response: Mapping[str, Any], model_version: str) -> dict[str, Any]:
    """One output line from the serving app's response to one image."""
    predictions = response.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != 1:
        raise BatchScoringError(
            f"The response for {image} holds {predictions!r} as predictions; expected exactly one "
            "prediction (one image per request)."
        )
    prediction = predictions[0]
    if prediction.get("assessable") is False:  # refused (blank, saturated, unlike training)
        return {
            "image": image,
            "assessable": False,
            "reason": prediction.get("reason", ""),
            "model_version": model_version,
        }
    line: dict[str, Any] = {
        "image": image,
        "probabilities": prediction["probabilities"],
        "predicted_class": prediction["top_class"],
        "model_version": model_version,
    }
    if "refer" in prediction:  # the operating-point decision, when the endpoint makes one
        line["refer"] = prediction["refer"]
    if "metadata_used" in prediction:  # whether patient metadata shaped this answer
        line["metadata_used"] = prediction["metadata_used"]
    return line


def write_lines(lines: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write the JSON lines; return how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")
            count += 1
    return count


def request_body(image: bytes, metadata: Mapping[str, str] | None) -> tuple[bytes, str]:
    """The body and content type for one image: the JPEG alone, or JSON with its metadata."""
    if metadata is None:
        return image, IMAGE_CONTENT_TYPE
    document = {"image": base64.b64encode(image).decode("ascii"), "metadata": dict(metadata)}
    return json.dumps(document).encode(), JSON_CONTENT_TYPE


async def _invoke(
    app: Any, body: bytes, content_type: str = IMAGE_CONTENT_TYPE
) -> tuple[int, bytes]:
    """One ``POST /invocations`` through the ASGI app, as Batch Transform sends it."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/invocations",
        "query_string": b"",
        "headers": [
            (b"content-type", content_type.encode()),
            (b"accept", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def score_folder(model_uri: Path, images: Path, output: Path, model_version: str) -> int:
    """Score every JPEG under ``images`` with the serving app loaded from ``model_uri`` (a model
    folder, model.tar.gz or a folder holding it); write ``output``; return the image count."""
    from skinlesion.serving.app import ServingApp
    from skinlesion.serving.settings import ServingSettings

    files = local_images(images)
    names = [path.relative_to(images).as_posix() for path in files]
    metadata_csv = images / METADATA_FILE
    metadata = read_metadata_csv(metadata_csv, names) if metadata_csv.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="skinlesion-batch-") as scratch:
        from skinlesion.artifacts import resolve_model_dir

        model_dir = resolve_model_dir(model_uri, Path(scratch))
        settings = ServingSettings(
            model_dir=model_dir, threads=1, explain=False, model_version=model_version
        ).resolved()
        app = ServingApp(settings)
        app.start()
        try:
            if not app.wait_ready():
                raise BatchScoringError(f"The model at {model_uri} did not load: {app.load_error}")
            lines = []
            for path, name in zip(files, names, strict=True):
                request, content_type = request_body(path.read_bytes(), metadata.get(name))
                status, body = asyncio.run(_invoke(app, request, content_type))
                if status != 200:
                    raise BatchScoringError(
                        f"The serving app answered {status} for {name}: {body.decode()[:500]}"
                    )
                lines.append(prediction_line(name, json.loads(body), model_version))
        finally:
            app.stop()
    count = write_lines(lines, output)
    log.info("Scored %d images from %s into %s", count, images, output)
    return count
