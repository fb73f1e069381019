"""Reading an invocation: content negotiation, the request body's shapes, and image decoding.

Everything here turns untrusted bytes into either images or a :class:`RequestError` (a 4xx
answer that says what was wrong and what is accepted); nothing here raises anything else.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from skinlesion import patient
from skinlesion.data.images import prepare_image

log = logging.getLogger(__name__)

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON_TYPE = "application/json"
CONTENT_TYPES = (*IMAGE_TYPES, JSON_TYPE)
RESPONSE_TYPE = "application/json"
EXPLAIN_METHODS = ("gradcam",)
IMAGE_FORMATS = ("JPEG", "PNG")

ACCEPTED_CONTENT = (
    "Content-Type image/jpeg, image/png or application/x-image with one JPEG or PNG image as the "
    'body, or application/json with {"image": "<base64>", "metadata": {...}} or '
    '{"instances": [{"b64": "<base64>", "metadata": {...}}, ...]} ("metadata" optional: '
    f"{patient.ACCEPTED})"
)
# SageMaker's InvokeEndpoint forwards its CustomAttributes parameter verbatim to the container as
# this request header, "no more than 1024 visible US-ASCII characters" (the InvokeEndpoint API
# reference, docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html;
# aws/sagemaker-tensorflow-serving-container's README posts it straight to /invocations the same
# way). The key=value;key=value format inside it is this project's own.
CUSTOM_ATTRIBUTES_HEADER = "x-amzn-sagemaker-custom-attributes"
CUSTOM_ATTRIBUTES_LIMIT = 1024
ACCEPTED_ATTRIBUTES = (
    f"the {CUSTOM_ATTRIBUTES_HEADER} header (InvokeEndpoint's CustomAttributes) with an image "
    "body: at most 1024 visible US-ASCII characters, key=value pairs separated by ';', keys "
    f"{', '.join(patient.FIELDS)}, each at most once, e.g. "
    f"'age_approx=55;sex=male;anatom_site=back' (age_approx a number from 0 to "
    f"{patient.MAX_AGE:g}, sex one of {', '.join(patient.SEXES)}, anatom_site one of "
    f'{", ".join(patient.SITES)}; "unknown" or leaving a key out means unknown); with a JSON '
    'body put "metadata" in the body instead'
)
ACCEPTED_ACCEPT = f"Accept {RESPONSE_TYPE} (or */*, application/*, or no Accept header)"

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class RequestError(Exception):
    """A request the app refuses: the HTTP status, what was wrong, and what is accepted."""

    def __init__(self, status: int, error: str, accepted: str):
        super().__init__(error)
        self.status = status
        self.error = error
        self.accepted = accepted

    def to_json(self) -> bytes:
        return json.dumps({"error": self.error, "accepted": self.accepted}).encode()


@dataclass(frozen=True)
class ImageLimits:
    """What one request may hold."""

    max_images: int = 16
    max_pixels: int = 36_000_000
    max_side: int = 20_000


def media_type(header: str | None) -> str:
    """``"Image/JPEG; charset=x"`` -> ``"image/jpeg"``; empty when absent."""
    return (header or "").split(";", 1)[0].strip().lower()


def check_accept(header: str | None) -> None:
    """Raise 406 unless the ``Accept`` header admits ``application/json``."""
    if header is None or not header.strip():
        return
    for part in header.split(","):
        pieces = [p.strip() for p in part.split(";")]
        kind = pieces[0].lower()
        quality = 1.0
        for parameter in pieces[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and kind in (RESPONSE_TYPE, "application/*", "*/*", "*"):
            return
    raise RequestError(
        406, f"Cannot answer in any type of Accept: {header[:200]!r}.", ACCEPTED_ACCEPT
    )


def check_content_type(header: str | None) -> str:
    """The request's media type, or 415 when it is missing or not one we accept."""
    kind = media_type(header)
    if kind in CONTENT_TYPES:
        return kind
    what = f"Content-Type {header[:200]!r}" if header else "A missing Content-Type"
    raise RequestError(415, f"{what} is not supported.", ACCEPTED_CONTENT)


def parse_explain(query_string: bytes) -> str:
    """The ``explain`` query parameter: "" (none) or one of EXPLAIN_METHODS; 400 otherwise."""
    from urllib.parse import parse_qs

    try:
        values = parse_qs(query_string.decode("latin-1")).get("explain", [])
    except ValueError:
        values = []
    if not values:
        return ""
    method = values[-1].strip().lower()
    if method in ("", "none", "false", "0"):
        return ""
    if method in EXPLAIN_METHODS:
        return method
    raise RequestError(
        400,
        f"Unknown explanation {values[-1][:50]!r}.",
        f"explain={' or explain='.join(EXPLAIN_METHODS)}, or no explain parameter",
    )


@dataclass(frozen=True)
class ParsedRequest:
    """A request's encoded images and, per image, its patient metadata (None: none sent)."""

    images: list[bytes]
    metadata: list[dict[str, Any] | None]

    def metadata_rows(self) -> np.ndarray | None:
        """(N, patient.FEATURES) for the images, or None when no image came with metadata.

        Values were already checked by :func:`parse_request`, so this does not raise.
        """
        return patient.parse_request(self.metadata, len(self.images))


def split_images(body: bytes, kind: str, limits: ImageLimits) -> list[bytes]:
    """The encoded images in a request body of media type ``kind`` (already checked)."""
    return parse_request(body, kind, limits).images


def parse_request(
    body: bytes, kind: str, limits: ImageLimits, custom_attributes: str | None = None
) -> ParsedRequest:
    """The images of a request body of media type ``kind`` and each one's patient metadata.

    JSON bodies carry metadata in the body; an image body in ``custom_attributes`` (the
    CustomAttributes header). Every metadata value is checked here, so a bad one is a 400 that
    names the image, before any image is decoded.
    """
    if not body:
        raise RequestError(400, "The request body is empty.", ACCEPTED_CONTENT)
    attributes = (custom_attributes or "").strip()
    if kind != JSON_TYPE:
        metadata: list[dict[str, Any] | None] = [parse_custom_attributes(attributes) or None]
        _check_metadata(metadata, 1, ACCEPTED_ATTRIBUTES)
        return ParsedRequest([body], metadata)
    if attributes:
        raise RequestError(
            400,
            f"The {CUSTOM_ATTRIBUTES_HEADER} header ({attributes[:100]!r}) came with a JSON body.",
            ACCEPTED_ATTRIBUTES,
        )
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise RequestError(
            400, f"The body is not valid JSON ({error}).", ACCEPTED_CONTENT
        ) from None
    encoded, metadata = _encoded_images(document)
    if not encoded:
        raise RequestError(400, "The JSON body holds no image.", ACCEPTED_CONTENT)
    if len(encoded) > limits.max_images:
        raise RequestError(
            400,
            f"The request holds {len(encoded)} images.",
            f"at most {limits.max_images} images per request; send the rest in more requests",
        )
    _check_metadata(metadata, len(encoded), patient.ACCEPTED)
    return ParsedRequest([_b64decode(text, index) for index, text in enumerate(encoded)], metadata)


def _encoded_images(document: Any) -> tuple[list[str], list[Any]]:
    """The base64 texts and, per image, its ``metadata`` value as sent (None when absent)."""
    if isinstance(document, dict) and "instances" in document:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise RequestError(400, '"instances" must be a list.', ACCEPTED_CONTENT)
        encoded, metadata = [], []
        for index, item in enumerate(instances):
            if not (isinstance(item, dict) and isinstance(item.get("b64"), str)):
                raise RequestError(
                    400,
                    f'instances[{index}] is not an object with a "b64" string.',
                    ACCEPTED_CONTENT,
                )
            encoded.append(item["b64"])
            metadata.append(item.get("metadata"))
        return encoded, metadata
    if isinstance(document, dict) and "image" in document:
        if not isinstance(document["image"], str):
            raise RequestError(400, '"image" must be a base64 string.', ACCEPTED_CONTENT)
        return [document["image"]], [document.get("metadata")]
    raise RequestError(400, 'The JSON body has neither "instances" nor "image".', ACCEPTED_CONTENT)


def _check_metadata(metadata: list[Any], count: int, accepted: str) -> None:
    """Raise a 400 naming the image whose metadata is not what the network was trained on."""
    try:
        patient.parse_request(metadata, count)
    except patient.MetadataError as error:
        # patient's message ends with its own "Accepted: ..."; the answer carries that apart.
        what = str(error).split(" Accepted: ", 1)[0]
        raise RequestError(400, what, accepted) from None


def parse_custom_attributes(header: str | None) -> dict[str, str]:
    """``age_approx=55;sex=male;anatom_site=back`` -> the fields (empty when the header is).

    Keys other than ``patient.FIELDS``, a pair without ``=``, a key given twice, or a header
    over SageMaker's 1024 visible ASCII characters are a 400: nothing is dropped silently.
    """
    text = (header or "").strip()
    if not text:
        return {}
    if len(text) > CUSTOM_ATTRIBUTES_LIMIT:
        raise RequestError(
            400,
            f"The {CUSTOM_ATTRIBUTES_HEADER} header is {len(text)} characters.",
            ACCEPTED_ATTRIBUTES,
        )
    odd = sorted({c for c in text if not (" " <= c <= "~" or c == "\t")})
    if odd:
        raise RequestError(
            400,
            f"The {CUSTOM_ATTRIBUTES_HEADER} header holds characters other than visible US-ASCII "
            f"({''.join(odd)[:20]!r}).",
            ACCEPTED_ATTRIBUTES,
        )
    fields: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue  # a trailing ';'
        key, equals, value = part.partition("=")
        key = key.strip().lower()
        if not equals or key not in patient.FIELDS:
            raise RequestError(
                400,
                f"The {CUSTOM_ATTRIBUTES_HEADER} header holds {part.strip()[:100]!r}, not one of "
                "this endpoint's key=value pairs.",
                ACCEPTED_ATTRIBUTES,
            )
        if key in fields:
            raise RequestError(
                400,
                f"The {CUSTOM_ATTRIBUTES_HEADER} header gives {key} twice.",
                ACCEPTED_ATTRIBUTES,
            )
        fields[key] = value.strip()
    return fields


def _b64decode(text: str, index: int) -> bytes:
    if text.startswith("data:") and "," in text[:100]:
        text = text.split(",", 1)[1]  # a data URL: data:image/png;base64,....
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestError(
            400,
            f"Image {index} is not valid base64 ({error}).",
            "standard base64 (RFC 4648, with padding), optionally as a data: URL",
        ) from None


def _sniff_format(data: bytes) -> str:
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    return ""


def decode_image(
    data: bytes, size: int, limits: ImageLimits, index: int | None = None
) -> np.ndarray:
    """One encoded JPEG or PNG -> (size, size, 3) uint8 RGB, exactly as the preprocess job does.

    The dimensions are checked from the header before any pixel is decoded, so a decompression
    bomb costs nothing; JPEGs decode at a reduced scale (libjpeg's DCT scaling) near ``size``.
    """
    which = "The image" if index is None else f"Image {index}"
    accepted = f"a JPEG or PNG image of at most {limits.max_pixels:,} pixels"
    if not data:
        raise RequestError(400, f"{which} is empty.", accepted)
    if not _sniff_format(data):
        raise RequestError(400, f"{which} is neither JPEG nor PNG (starts {data[:8]!r}).", accepted)
    try:
        # Pillow's own bomb check (a warning above Image.MAX_IMAGE_PIXELS, an error at twice
        # that) sits far above max_pixels; ours runs first, on the header alone.
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if (
                width * height > limits.max_pixels
                or max(width, height) > limits.max_side
                or min(width, height) < 1
            ):
                raise RequestError(
                    400,
                    f"{which} is {width} x {height} pixels.",
                    f"{accepted}, at most {limits.max_side} on a side",
                )
            if image.format == "JPEG":
                image.draft("RGB", (size, size))
            return prepare_image(image, size)
    except RequestError:
        raise
    except Image.DecompressionBombError as error:
        raise RequestError(
            400,
            f"{which} has too many pixels ({error})",
            f"{accepted}, at most {limits.max_side} on a side",
        ) from None
    except Exception as error:  # any failure to decode untrusted bytes is a 400
        log.debug("Undecodable image: %s: %s", type(error).__name__, error)
        raise RequestError(
            400, f"{which} could not be decoded ({type(error).__name__}: {error}).", accepted
        ) from None
