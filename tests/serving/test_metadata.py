"""Patient metadata at the endpoint: JSON "metadata", the CustomAttributes header, the response's
``metadata_used``, data capture, and batch scoring with a metadata.csv, over real HTTP.

The model is trained in seconds on grey noise whose class only the anatomic site tells
(tests/training/test_metadata.py), so an answer that ignored the metadata would be near chance.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.serving.conftest import RunningServer, png_bytes, start_server, stop_server
from tests.training.test_metadata import CLASS_SITE, fit_metadata_only

from skinlesion import patient
from skinlesion.capture import iter_capture_records
from skinlesion.labels import CLASSES
from skinlesion.models import Predictor
from skinlesion.serving.requests import CUSTOM_ATTRIBUTES_HEADER, ImageLimits, decode_image

TEMPERATURE = 1.7  # not 1: a forgotten division by the temperature would show
MALIGNANT = ("MEL", "BCC", "SCC")
SIZE = 32


def noise_pngs_of(count: int) -> list[bytes]:
    """Grey noise like the training images: no class signal in the pixels."""
    rng = np.random.default_rng(11)
    arrays = rng.integers(90, 170, size=(count, SIZE, SIZE, 3), dtype=np.uint8)
    return [png_bytes(Image.fromarray(a)) for a in arrays]


def site_fields(site: str) -> dict[str, object]:
    """What the training images' rows hold, with ``site``."""
    return {"age_approx": 50, "sex": "female", "anatom_site": site}


def malignancy(probabilities: np.ndarray) -> np.ndarray:
    return probabilities[:, [CLASSES.index(c) for c in MALIGNANT]].sum(axis=1)


@pytest.fixture(scope="session")
def metadata_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A network with the metadata term (site -> class), a temperature and an operating point.

    The referral threshold lies halfway between the malignancy score of the first noise image
    with the site "back" (MEL's) and without metadata: only the metadata-aware score refers it.
    """
    from skinlesion.clinical import OperatingPoint
    from skinlesion.models import save_model

    _, result = fit_metadata_only(tmp_path_factory)
    spec = replace(result.spec, temperature=TEMPERATURE, version="meta/1")
    folder = tmp_path_factory.mktemp("meta-model") / "model"
    predictor = Predictor.load(save_model(result.model, spec, folder), precision="fp32")
    image = noise_pngs_of(1) * 2
    scores = malignancy(expected_probabilities(predictor, image, [site_fields("back"), None]))
    assert scores[0] > scores[1] + 1e-3, scores  # the site of MEL raises the malignancy score
    point = OperatingPoint(MALIGNANT, float(scores.mean()), "sensitivity", 0.9, 0.9, 0.5, 0.5, 10)
    return save_model(result.model, replace(spec, operating_point=point.to_dict()), folder)


@pytest.fixture(scope="module")
def metadata_server(
    metadata_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(
        metadata_model, tmp_path_factory.mktemp("meta-server"), "--runtime", "onnx"
    )
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def noise_pngs() -> list[bytes]:
    return noise_pngs_of(len(CLASS_SITE))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def probabilities_of(prediction: dict) -> np.ndarray:  # type: ignore[type-arg]
    return np.array([prediction["probabilities"][c] for c in CLASSES])


def expected_probabilities(
    predictor: Predictor,
    images: list[bytes],
    fields: list[dict | None],  # type: ignore[type-arg]
) -> np.ndarray:
    """softmax(logits / T) of the Predictor with the metadata rows, on the decoded pixels."""
    pixels = np.stack([decode_image(i, SIZE, ImageLimits()) for i in images])
    rows = patient.parse_request(fields, len(images))
    logits, _ = predictor.logits_with_embeddings(pixels, metadata=rows)
    scaled = logits / TEMPERATURE
    out = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return out / out.sum(axis=1, keepdims=True)


def invoke_with_sites(client: httpx.Client, images: list[bytes]) -> list[dict]:  # type: ignore[type-arg]
    instances = [
        {"b64": b64(data), "metadata": site_fields(site)}
        for data, site in zip(images, CLASS_SITE, strict=True)
    ]
    response = client.post("/invocations", json={"instances": instances})
    assert response.status_code == 200, response.text
    return list(response.json()["predictions"])


def test_metadata_decides_where_the_image_cannot(
    metadata_server: RunningServer, noise_pngs: list[bytes]
) -> None:
    with metadata_server.client() as client:
        info = client.get("/model").json()
        assert info["reads_metadata"] is True
        assert info["metadata_fields"]["anatom_site"] == list(patient.SITES)
        with_metadata = invoke_with_sites(client, noise_pngs)
        plain = client.post(
            "/invocations", json={"instances": [{"b64": b64(d)} for d in noise_pngs]}
        ).json()["predictions"]
    assert [p["top_class"] for p in with_metadata] == list(CLASSES)  # the site's class
    assert all(p["metadata_used"] is True for p in with_metadata)
    assert with_metadata[0]["metadata"] == {
        "age_approx": 50.0,
        "sex": "female",
        "anatom_site": CLASS_SITE[0],
    }
    assert all(p["metadata_used"] is False and "metadata" not in p for p in plain)
    assert sum(p["top_class"] == c for p, c in zip(plain, CLASSES, strict=True)) <= 3
    # The referral decision reads the adjusted probabilities (the fixture's threshold lies
    # between image 0's score with the site of MEL and without metadata).
    for prediction in [*with_metadata, *plain]:
        score = malignancy(probabilities_of(prediction)[None])[0]
        assert prediction["malignancy_score"] == pytest.approx(score, abs=1e-6)
        assert prediction["refer"] is bool(score >= prediction["referral_threshold"])
    assert with_metadata[0]["refer"] is True and plain[0]["refer"] is False


@pytest.mark.parametrize("runtime", ["onnx", "torchscript"])
def test_served_probabilities_equal_the_network_with_metadata(
    runtime: str,
    metadata_model: Path,
    metadata_server: RunningServer,
    noise_pngs: list[bytes],
    tmp_path: Path,
) -> None:
    images = noise_pngs[:4]
    fields: list[dict | None] = [  # type: ignore[type-arg]
        {"anatom_site": "foot"},
        None,  # no metadata: the image-only answer
        {"age_approx": 80, "sex": "male", "anatom_site": "scalp"},
        {"sex": "unknown", "age_approx": None},  # all unknown: metadata_used false
    ]
    instances = [
        {"b64": b64(d), **({} if f is None else {"metadata": f})}
        for d, f in zip(images, fields, strict=True)
    ]
    server = metadata_server
    if runtime != "onnx":
        server = start_server(metadata_model, tmp_path, "--runtime", runtime)
    try:
        with server.client() as client:
            response = client.post("/invocations", json={"instances": instances})
    finally:
        if server is not metadata_server:
            stop_server(server)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    got = np.stack([probabilities_of(p) for p in predictions])
    predictor = Predictor.load(metadata_model, precision="fp32")
    np.testing.assert_allclose(got, expected_probabilities(predictor, images, fields), atol=1e-5)
    assert [p["metadata_used"] for p in predictions] == [True, False, True, False]
    assert [p["top_class"] for p in predictions[::2]] == ["BCC", "AK"]  # foot, scalp


def test_custom_attributes_header_with_an_image_body(
    metadata_server: RunningServer, metadata_model: Path, noise_pngs: list[bytes]
) -> None:
    predictor = Predictor.load(metadata_model, precision="fp32")
    headers = {
        "Content-Type": "image/png",
        CUSTOM_ATTRIBUTES_HEADER: "age_approx=40;sex=male; anatom_site=face",
    }
    with metadata_server.client() as client:
        response = client.post("/invocations", content=noise_pngs[0], headers=headers)
        plain = client.post(
            "/invocations", content=noise_pngs[0], headers={"Content-Type": "image/png"}
        )
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["top_class"] == "NV" and prediction["metadata_used"] is True
    fields = [{"age_approx": "40", "sex": "male", "anatom_site": "face"}]
    np.testing.assert_allclose(
        probabilities_of(prediction),
        expected_probabilities(predictor, noise_pngs[:1], fields)[0],
        atol=1e-5,
    )
    assert plain.json()["predictions"][0]["metadata_used"] is False
    assert not np.allclose(
        probabilities_of(plain.json()["predictions"][0]), probabilities_of(prediction)
    )


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        ({"instances": [{"b64": "", "metadata": {}}, {"b64": "", "metadata": {"anatom_site": "moon"}}]}, {}, "metadata of image 1: Invalid anatom_site 'moon'"),
        ({"image": "", "metadata": {"age_approx": 300}}, {}, "metadata of image 0: Invalid age_approx 300"),
        ({"image": "", "metadata": "back"}, {}, "metadata of image 0 is str, not an object"),
        ({"image": "", "metadata": {"site": "back"}}, {}, "Unknown metadata field"),
        (None, {CUSTOM_ATTRIBUTES_HEADER: "sex=other"}, "Invalid sex 'other'"),
        (None, {CUSTOM_ATTRIBUTES_HEADER: "trace-id=abc"}, "'trace-id=abc', not one of"),
        (None, {CUSTOM_ATTRIBUTES_HEADER: "sex=male;sex=female"}, "gives sex twice"),
        (None, {CUSTOM_ATTRIBUTES_HEADER: "sex=" + "x" * 1030}, "1034 characters"),
        ({"image": ""}, {CUSTOM_ATTRIBUTES_HEADER: "sex=male"}, "came with a JSON body"),
    ],
)  # fmt: skip
def test_bad_metadata_is_a_400_naming_it_and_what_is_accepted(
    metadata_server: RunningServer,
    noise_pngs: list[bytes],
    body: dict | None,  # type: ignore[type-arg]
    headers: dict[str, str],
    message: str,
) -> None:
    if body is None:
        content, kind = noise_pngs[0], "image/png"
    else:
        for item in body.get("instances", [body]):
            item["b64" if "b64" in item else "image"] = b64(noise_pngs[0])
        content, kind = json.dumps(body).encode(), "application/json"
    with metadata_server.client() as client:
        response = client.post(
            "/invocations", content=content, headers={"Content-Type": kind, **headers}
        )
    assert response.status_code == 400, response.text
    answer = response.json()
    assert message in answer["error"]
    assert "anatom_site" in answer["accepted"] and "upper extremity" in answer["accepted"]


def test_a_model_without_the_metadata_term_answers_from_the_image(
    client: httpx.Client, fitted_serving_model: Path, sample_jpegs: list[Path]
) -> None:
    """The session's image-only server: metadata is read, checked, echoed, and not applied."""
    data = sample_jpegs[0].read_bytes()
    assert client.get("/model").json()["reads_metadata"] is False
    plain = client.post("/invocations", content=data, headers={"Content-Type": "image/jpeg"})
    with_meta = client.post(
        "/invocations",
        json={"image": b64(data), "metadata": {"anatom_site": "back", "sex": "male"}},
    )
    attributes = client.post(
        "/invocations",
        content=data,
        headers={"Content-Type": "image/jpeg", CUSTOM_ATTRIBUTES_HEADER: "anatom_site=back"},
    )
    bad = client.post("/invocations", json={"image": b64(data), "metadata": {"sex": "x"}})
    assert bad.status_code == 400  # the values are checked the same way
    (reference,) = plain.json()["predictions"]
    for response in (with_meta, attributes):
        assert response.status_code == 200, response.text
        (prediction,) = response.json()["predictions"]
        assert prediction["metadata_used"] is False
        assert "does not read patient metadata" in prediction["note"]
        assert prediction["metadata"]["anatom_site"] == "back"
        assert prediction["probabilities"] == reference["probabilities"]
    assert reference["metadata_used"] is False and "note" not in reference


def test_data_capture_keeps_the_metadata(
    metadata_server: RunningServer, noise_pngs: list[bytes]
) -> None:
    """A JSON body is captured as sent (metadata included); for an image body with the header,
    the captured answer echoes the fields read (SageMaker's capture keeps body and answer)."""
    body = {"image": b64(noise_pngs[2]), "metadata": {"anatom_site": "foot", "age_approx": 33}}
    with metadata_server.client() as client:
        sent = client.post("/invocations", json=body)
        header = client.post(
            "/invocations",
            content=noise_pngs[3],
            headers={"Content-Type": "image/png", CUSTOM_ATTRIBUTES_HEADER: "anatom_site=ear"},
        )
    ids = {sent.headers["x-event-id"], header.headers["x-event-id"]}
    records = {}
    for _ in range(100):  # the writer works off the request path; give it a moment
        if metadata_server.capture_dir.is_dir():
            records = {r.event_id: r for r in iter_capture_records(metadata_server.capture_dir)}
            if ids <= set(records):
                break
        time.sleep(0.1)
    captured = records[sent.headers["x-event-id"]]
    assert json.loads(captured.input_data)["metadata"] == body["metadata"]
    assert captured.output_json()["predictions"][0]["metadata_used"] is True
    echoed = records[header.headers["x-event-id"]]
    assert echoed.input_data == noise_pngs[3]
    assert echoed.output_json()["predictions"][0]["metadata"] == {"anatom_site": "ear"}


def test_batch_scoring_sends_each_image_with_its_metadata_row(
    metadata_model: Path, noise_pngs: list[bytes], tmp_path: Path
) -> None:
    from skinlesion.batch import METADATA_FILE, BatchInputError, score_folder

    folder = tmp_path / "images"
    folder.mkdir()
    names = [f"ISIC_{i:07d}" for i in range(4)]
    for name, data in zip(names, noise_pngs[:4], strict=True):
        # JPEG, as batch scoring takes; quality 100 and full-resolution chroma keep the noise
        # within the training images' pixel statistics (else refused as unlike them)
        array = np.asarray(Image.open(io.BytesIO(data)))
        Image.fromarray(array).save(folder / f"{name}.jpg", quality=100, subsampling=0)
    Image.new("RGB", (SIZE, SIZE), (128, 128, 128)).save(folder / "blank.jpg")  # refused
    sites = {names[0]: "back", names[1]: "face", names[2]: "unknown"}  # names[3]: no row
    with (folder / METADATA_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "age_approx", "sex", "anatom_site"])
        for name, site in sites.items():
            writer.writerow([name, "50", "", site])
    output = tmp_path / "out.jsonl"
    assert score_folder(metadata_model, folder, output, "meta/1") == 5
    lines = {json.loads(x)["image"]: json.loads(x) for x in output.read_text().splitlines()}
    assert set(lines) == {f"{n}.jpg" for n in names} | {"blank.jpg"}
    blank = lines.pop("blank.jpg")
    assert blank["assessable"] is False and "blank frame" in blank["reason"]
    assert lines[f"{names[0]}.jpg"]["predicted_class"] == "MEL"
    assert lines[f"{names[1]}.jpg"]["predicted_class"] == "NV"
    assert [lines[f"{n}.jpg"]["metadata_used"] for n in names] == [True, True, True, False]

    predictor = Predictor.load(metadata_model, precision="fp32")
    jpegs = [(folder / f"{n}.jpg").read_bytes() for n in names]
    fields: list[dict | None] = [  # type: ignore[type-arg]
        {"age_approx": "50", "sex": "", "anatom_site": site} for site in sites.values()
    ]
    fields.append(None)
    expected = expected_probabilities(predictor, jpegs, fields)
    got = np.stack([probabilities_of(lines[f"{n}.jpg"]) for n in names])
    np.testing.assert_allclose(got, expected, atol=1e-5)

    with (folder / METADATA_FILE).open("a", newline="") as handle:
        csv.writer(handle).writerow(["ISIC_missing", "50", "male", "back"])
    with pytest.raises(BatchInputError, match=r"ISIC_missing"):
        score_folder(metadata_model, folder, output, "meta/1")


def test_a_metadata_csv_is_checked_and_refused_on_the_transform_path(tmp_path: Path) -> None:
    from skinlesion.batch import (
        METADATA_FILE,
        BatchInputError,
        check_image_names,
        read_metadata_csv,
    )

    with pytest.raises(BatchInputError, match=r"metadata.csv: .*local batch scoring only"):
        check_image_names(["ISIC_1.jpg", METADATA_FILE], "s3://bucket/batch/")
    names = ["ISIC_1.jpg", "sub/ISIC_2.jpg", "other/ISIC_2.jpg"]
    path = tmp_path / METADATA_FILE
    cases = {
        "image,age_approx\nISIC_1,40\n": {"ISIC_1.jpg": {"age_approx": "40"}},
        "image,anatom_site_general\nISIC_1,back\n": {"ISIC_1.jpg": {"anatom_site": "back"}},
        "name,age_approx\nISIC_1,40\n": r"columns \['name', 'age_approx'\]; expected",
        "image,sex\n,male\n": r"line 2 names no image",
        "image,sex\nISIC_2,male\n": r"'ISIC_2', which matches 2 JPEG.*sub/ISIC_2.jpg",
        "image,sex\nISIC_1,male\nISIC_1,female\n": r"line 3 names 'ISIC_1' a second time",
    }
    for text, expected in cases.items():
        path.write_text(text)
        if isinstance(expected, dict):
            assert read_metadata_csv(path, names) == expected
        else:
            with pytest.raises(BatchInputError, match=expected):
                read_metadata_csv(path, names)
