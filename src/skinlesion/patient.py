"""Patient metadata beside the image: age, sex and anatomic site, encoded for the network.

ISIC 2019's winning entries fed these fields to the network next to the image; in this
project's cross-validated recipe search they added 0.026 to 0.032 balanced accuracy
(docs/benchmarks.md, "Recipe search"). The network adds a linear term of the encoded fields to
its image logits (``models.SkinLesionNet``), so a missing field, or a request without metadata,
is simply the "unknown" encoding the network also saw in training.

Encoding (``FEATURES`` columns): age as (age - 50) / 20 with a missing flag; sex one-hot over
``SEXES`` (unknown: zeros); site one-hot over ``SITES`` (unknown: zeros).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FIELDS = ("age_approx", "sex", "anatom_site")
SEXES = ("male", "female")
# HAM10000's localisations and ISIC 2019's anatom_site_general values (the ISIC archive's
# metadata dictionary), lower-cased as preprocessing writes them.
SITES = (
    "abdomen", "acral", "anterior torso", "back", "chest", "ear", "face", "foot", "genital",
    "hand", "head/neck", "lateral torso", "lower extremity", "neck", "oral/genital",
    "palms/soles", "posterior torso", "scalp", "trunk", "upper extremity",
)  # fmt: skip
UNKNOWN = ("", "unknown", "nan")
MAX_AGE = 120.0
FEATURES = 2 + len(SEXES) + len(SITES)
ACCEPTED = (
    f'"metadata": {{"age_approx": a number from 0 to {MAX_AGE:g}, "sex": one of '
    f'{", ".join(SEXES)}, "anatom_site": one of {", ".join(SITES)}}}; every field is optional '
    '(absent, null or "unknown" means unknown)'
)


class MetadataError(ValueError):
    """A metadata value outside what the network was trained on."""


def unknown_vector() -> np.ndarray:
    """The encoding of a patient of whom nothing is known (what an image-only request gets)."""
    return encode({})


def encode(fields: Mapping[str, Any] | None, *, strict: bool = True) -> np.ndarray:
    """One patient's fields as a float32 vector of ``FEATURES``.

    ``strict`` refuses a value outside the vocabularies (the endpoint's rule); otherwise it is
    read as unknown (training data, where ``encode_rows`` counts and logs such values).
    """
    fields = dict(fields or {})
    extra = sorted(set(fields) - set(FIELDS))
    if extra and strict:
        raise MetadataError(f"Unknown metadata field(s) {extra}. Accepted: {ACCEPTED}.")
    vector = np.zeros(FEATURES, dtype=np.float32)
    age = _age(fields.get("age_approx"), strict=strict)
    if age is None:
        vector[1] = 1.0
    else:
        vector[0] = (age - 50.0) / 20.0
    sex = _category(fields.get("sex"), SEXES, "sex", strict=strict)
    if sex is not None:
        vector[2 + SEXES.index(sex)] = 1.0
    site = _category(fields.get("anatom_site"), SITES, "anatom_site", strict=strict)
    if site is not None:
        vector[2 + len(SEXES) + SITES.index(site)] = 1.0
    return vector


def encode_rows(
    image_ids: Sequence[str], rows: Mapping[str, Mapping[str, str]] | None
) -> np.ndarray:
    """(N, FEATURES) for a split's images from its metadata table (``None``: all unknown).

    A value outside the vocabularies is read as unknown and counted in the log, not dropped
    silently; an image without a row is unknown too.
    """
    matrix = np.empty((len(image_ids), FEATURES), dtype=np.float32)
    unread: Counter[str] = Counter()
    for index, image in enumerate(image_ids):
        row = (rows or {}).get(image, {})
        for name, allowed in (("sex", SEXES), ("anatom_site", SITES)):
            value = str(row.get(name, "")).strip().lower()
            if value not in UNKNOWN and value not in allowed:
                unread[f"{name}={value}"] += 1
        if (
            _age(row.get("age_approx"), strict=False) is None
            and str(row.get("age_approx", "")).strip().lower() not in UNKNOWN
        ):
            unread[f"age_approx={row.get('age_approx')}"] += 1
        matrix[index] = encode(row, strict=False)
    if unread:
        log.warning(
            "Metadata values outside the vocabulary were read as unknown: %s. Accepted: %s",
            ", ".join(f"{value} ({count})" for value, count in unread.most_common()),
            ACCEPTED,
        )
    return matrix


def coverage(matrix: np.ndarray) -> dict[str, float]:
    """The share of rows with each field known (for logs and the model card)."""
    if len(matrix) == 0:
        return {name: 0.0 for name in FIELDS}
    sex = matrix[:, 2 : 2 + len(SEXES)].sum(axis=1) > 0
    site = matrix[:, 2 + len(SEXES) :].sum(axis=1) > 0
    return {
        "age_approx": float(1.0 - matrix[:, 1].mean()),
        "sex": float(sex.mean()),
        "anatom_site": float(site.mean()),
    }


def parse_request(documents: Iterable[Any], count: int) -> np.ndarray | None:
    """The ``metadata`` objects of a request's images as (count, FEATURES), or None if none given.

    ``documents`` holds one entry per image: a dict of fields, or None where that image came
    without metadata (its row is the unknown encoding).
    """
    entries = list(documents)
    if len(entries) != count:
        raise MetadataError(
            f"Got metadata for {len(entries)} image(s) but {count} image(s). Accepted: {ACCEPTED}."
        )
    if all(entry is None for entry in entries):
        return None
    rows = []
    for index, entry in enumerate(entries):
        if entry is not None and not isinstance(entry, dict):
            raise MetadataError(
                f"metadata of image {index} is {type(entry).__name__}, not an object. "
                f"Accepted: {ACCEPTED}."
            )
        try:
            rows.append(encode(entry))
        except MetadataError as exc:
            raise MetadataError(f"metadata of image {index}: {exc}") from None
    return np.stack(rows)


def _age(value: Any, *, strict: bool) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in UNKNOWN):
        return None
    try:
        age = float(value)
    except (TypeError, ValueError):
        if strict:
            raise MetadataError(f"Invalid age_approx {value!r}. Accepted: {ACCEPTED}.") from None
        return None
    if isinstance(value, bool) or math.isnan(age) or not 0 <= age <= MAX_AGE:
        if strict:
            raise MetadataError(f"Invalid age_approx {value!r}. Accepted: {ACCEPTED}.")
        return None
    return age


def _category(value: Any, allowed: Sequence[str], name: str, *, strict: bool) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        if strict:
            raise MetadataError(f"Invalid {name} {value!r}: not a string. Accepted: {ACCEPTED}.")
        return None
    text = value.strip().lower()
    if text in UNKNOWN:
        return None
    if text not in allowed:
        if strict:
            raise MetadataError(f"Invalid {name} {value!r}. Accepted: {ACCEPTED}.")
        return None
    return text


def spec_entry(train_matrix: np.ndarray) -> dict[str, Any]:
    """What ``ModelSpec.metadata`` records: the encoding's vocabularies and the training coverage."""
    return {
        "fields": list(FIELDS),
        "sexes": list(SEXES),
        "sites": list(SITES),
        "features": FEATURES,
        "train_coverage": {k: round(v, 4) for k, v in coverage(train_matrix).items()},
    }


def check_spec(entry: Mapping[str, Any], where: str) -> None:
    """Refuse a bundle whose metadata encoding differs from this code's (it would be misread)."""
    expected = {"fields": list(FIELDS), "sexes": list(SEXES), "sites": list(SITES)}
    found = {key: list(entry.get(key, [])) for key in expected}
    if found != expected or int(entry.get("features", -1)) != FEATURES:
        raise ValueError(
            f"{where} encodes patient metadata as {found} ({entry.get('features')} features); "
            f"this code encodes {expected} ({FEATURES} features). Serve it with the skinlesion "
            "version that trained it."
        )


def adjust(probabilities: np.ndarray, offsets: np.ndarray, temperature: float) -> np.ndarray:
    """Image-only calibrated probabilities with the metadata offsets applied.

    softmax((z + o) / T) == softmax(log softmax(z / T) + o / T), so this is exact for any
    runtime's probabilities (``Predictor.metadata_offsets`` gives ``o``).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    logits = np.log(np.clip(p, 1e-300, None)) + np.asarray(offsets, np.float64) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)
