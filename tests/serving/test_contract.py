"""SageMaker's inference contract over real HTTP against a started server."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image
from tests.serving.conftest import ENDPOINT, MODEL_VERSION, RunningServer, free_port, png_bytes

from skinlesion.capture import iter_capture_records
from skinlesion.labels import CLASSES
from skinlesion.serving.app import LoadedModel, ServingApp, load_model
from skinlesion.serving.settings import ServingSettings


def check_prediction(prediction: dict[str, object]) -> None:
    probabilities = prediction["probabilities"]
    assert isinstance(probabilities, dict) and list(probabilities) == list(CLASSES)
    assert abs(sum(probabilities.values()) - 1) < 1e-4
    top = max(probabilities, key=probabilities.get)  # type: ignore[arg-type]
    assert prediction["top_class"] == top
    assert prediction["top_probability"] == probabilities[top]


def test_ping_is_200_with_the_model_loaded(client: httpx.Client) -> None:
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model_version": MODEL_VERSION}


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/x-image", "image/jpeg; q=1"])
def test_a_jpeg_body(client: httpx.Client, sample_jpegs: list[Path], content_type: str) -> None:
    response = client.post(
        "/invocations", content=sample_jpegs[0].read_bytes(), headers={"Content-Type": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"predictions", "model_version", "architecture", "latency_ms"}
    assert body["model_version"] == MODEL_VERSION
    assert body["architecture"] == "efficientnet_lite0"
    assert 0 < body["latency_ms"] < 60_000
    assert len(body["predictions"]) == 1
    check_prediction(body["predictions"][0])


def test_a_png_body(client: httpx.Client, sample_jpegs: list[Path]) -> None:
    data = png_bytes(Image.open(sample_jpegs[1]))
    response = client.post("/invocations", content=data, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    check_prediction(response.json()["predictions"][0])


def test_json_bodies_single_and_batch_agree(client: httpx.Client, sample_jpegs: list[Path]) -> None:
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in sample_jpegs[:5]]
    batch = client.post("/invocations", json={"instances": [{"b64": e} for e in encoded]})
    assert batch.status_code == 200, batch.text
    predictions = batch.json()["predictions"]
    assert len(predictions) == 5
    for text, prediction in zip(encoded, predictions, strict=True):
        single = client.post("/invocations", json={"image": text}).json()["predictions"][0]
        check_prediction(single)
        for code in CLASSES:
            assert single["probabilities"][code] == pytest.approx(
                prediction["probabilities"][code], abs=1e-6
            )


@pytest.mark.parametrize(
    "accept", ["application/json", "*/*", "application/*", "text/csv, application/json;q=0.1"]
)
def test_accept_admitting_json(client: httpx.Client, sample_jpegs: list[Path], accept: str) -> None:
    response = client.post(
        "/invocations",
        content=sample_jpegs[0].read_bytes(),
        headers={"Content-Type": "image/jpeg", "Accept": accept},
    )
    assert response.status_code == 200


@pytest.mark.parametrize("accept", ["text/csv", "image/png", "application/json;q=0"])
def test_unsupported_accept_is_406(
    client: httpx.Client, sample_jpegs: list[Path], accept: str
) -> None:
    response = client.post(
        "/invocations",
        content=sample_jpegs[0].read_bytes(),
        headers={"Content-Type": "image/jpeg", "Accept": accept},
    )
    assert response.status_code == 406
    assert "application/json" in response.json()["accepted"]


def test_gradcam_explanation(client: httpx.Client, sample_jpegs: list[Path]) -> None:
    response = client.post(
        "/invocations?explain=gradcam",
        content=sample_jpegs[2].read_bytes(),
        headers={"Content-Type": "image/jpeg"},
    )
    assert response.status_code == 200, response.text
    prediction = response.json()["predictions"][0]
    explanation = prediction["explanation"]
    assert explanation["method"] == "gradcam"
    assert explanation["class"] == prediction["top_class"]
    assert explanation["layer"] == "trunk.net._swish"
    heatmap = Image.open(io.BytesIO(base64.b64decode(explanation["heatmap_png_base64"])))
    assert heatmap.format == "PNG" and heatmap.mode == "L" and heatmap.size == (64, 64)
    plain = client.post(
        "/invocations", content=sample_jpegs[2].read_bytes(), headers={"Content-Type": "image/jpeg"}
    ).json()["predictions"][0]
    assert "explanation" not in plain
    assert plain["probabilities"] == prediction["probabilities"]


def test_routes_and_methods(client: httpx.Client) -> None:
    assert client.get("/invocations").status_code == 405
    assert client.post("/ping").status_code == 405
    missing = client.get("/predict")
    assert missing.status_code == 404 and "/invocations" in missing.json()["accepted"]
    parameters = client.get("/execution-parameters")
    assert parameters.status_code == 200 and parameters.json()["MaxPayloadInMB"] == 6


def test_capture_round_trip(
    server: RunningServer, client: httpx.Client, sample_jpegs: list[Path]
) -> None:
    sent = {}
    start = time.time()
    for path in sample_jpegs[:3]:
        response = client.post(
            "/invocations", content=path.read_bytes(), headers={"Content-Type": "image/jpeg"}
        )
        sent[response.headers["x-event-id"]] = (path.read_bytes(), response.content)
    json_body = json.dumps({"image": base64.b64encode(sample_jpegs[3].read_bytes()).decode()})
    response = client.post(
        "/invocations", content=json_body, headers={"Content-Type": "application/json"}
    )
    sent[response.headers["x-event-id"]] = (json_body.encode(), response.content)
    refused = client.post("/invocations", content=b"", headers={"Content-Type": "image/jpeg"})
    assert refused.status_code == 400 and "x-event-id" not in refused.headers

    records = {}
    for _ in range(100):  # the writer works off the request path; give it a moment
        records = {r.event_id: r for r in iter_capture_records(server.capture_dir)}
        if set(sent) <= set(records):
            break
        time.sleep(0.1)
    assert set(sent) <= set(records)
    for event_id, (body, output) in sent.items():
        record = records[event_id]
        assert record.input_data == body
        assert record.output_data == output
        assert record.output_content_type == "application/json"
        assert start - 5 <= record.inference_time.timestamp() <= time.time() + 5
    assert records[response.headers["x-event-id"]].input_content_type == "application/json"

    files = list(server.capture_dir.rglob("*.jsonl"))
    relative = files[0].relative_to(server.capture_dir).parts
    assert relative[:2] == (ENDPOINT, "AllTraffic") and len(relative) == 7
    line = json.loads(files[0].read_text().splitlines()[0])
    assert set(line) == {"captureData", "eventMetadata", "eventVersion"}
    assert line["eventVersion"] == "0"
    assert set(line["captureData"]["endpointInput"]) == {
        "observedContentType",
        "mode",
        "data",
        "encoding",
    }
    assert line["captureData"]["endpointInput"]["mode"] == "INPUT"
    assert line["captureData"]["endpointOutput"]["mode"] == "OUTPUT"
    assert line["captureData"]["endpointOutput"]["encoding"] == "JSON"
    assert set(line["eventMetadata"]) == {"eventId", "inferenceTime"}


def test_ping_is_503_until_the_model_is_loaded(packed_serving_model: Path) -> None:
    release = threading.Event()

    def slow_loader(settings: ServingSettings) -> LoadedModel:
        release.wait(60)
        return load_model(settings)

    port = free_port()
    settings = ServingSettings(model_dir=packed_serving_model, port=port, threads=1, explain=False)
    app = ServingApp(settings, loader=slow_loader)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                loading = httpx.get(f"{url}/ping", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert loading.status_code == 503 and loading.json() == {"status": "loading"}
        early = httpx.post(
            f"{url}/invocations", content=b"x", headers={"Content-Type": "image/jpeg"}, timeout=5
        )
        assert early.status_code == 503 and "loading" in early.json()["error"]
        release.set()
        assert app.wait_ready(120)
        ready = httpx.get(f"{url}/ping", timeout=5)
        assert ready.status_code == 200 and ready.json()["model_version"] == "from-spec"
        image = np.zeros((64, 64, 3), np.uint8)
        response = httpx.post(
            f"{url}/invocations",
            content=png_bytes(Image.fromarray(image)),
            headers={"Content-Type": "image/png"},
            timeout=30,
        )
        assert response.status_code == 200
        explain = httpx.post(
            f"{url}/invocations?explain=gradcam",
            content=png_bytes(Image.fromarray(image)),
            headers={"Content-Type": "image/png"},
            timeout=30,
        )
        assert explain.status_code == 400 and "turned off" in explain.json()["error"]
    finally:
        release.set()
        server.should_exit = True
        thread.join(30)


def test_a_failed_load_is_reported_on_ping(tmp_path: Path) -> None:
    failures: list[BaseException] = []
    app = ServingApp(ServingSettings(model_dir=tmp_path), on_fatal=failures.append)
    app.start()
    assert not app.wait_ready(60)
    assert failures and "holds no model" in app.load_error
    app.stop()


def test_a_worker_accepts_connections_only_once_loaded(packed_serving_model: Path) -> None:
    """Workers of a multi-worker server load during start-up: never a 503 from a sibling."""
    release = threading.Event()
    loading = threading.Event()

    def slow_loader(settings: ServingSettings) -> LoadedModel:
        loading.set()
        release.wait(60)
        return load_model(settings)

    port = free_port()
    settings = ServingSettings(model_dir=packed_serving_model, port=port, threads=1, explain=False)
    app = ServingApp(settings, loader=slow_loader, load_in_background=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        assert loading.wait(60)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/ping", timeout=2)  # not listening yet
        release.set()
        for _ in range(600):
            try:
                first = httpx.get(f"{url}/ping", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert first.status_code == 200
    finally:
        release.set()
        server.should_exit = True
        thread.join(30)


def test_loading_a_packed_model_leaves_nothing_in_the_temp_dir(
    packed_serving_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive is unpacked to a scratch folder that goes once the weights are in memory."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    settings = ServingSettings(
        model_dir=packed_serving_model, threads=1, explain=False, runtime="torch"
    )
    model = load_model(settings)
    try:
        assert model.classes == tuple(CLASSES)
        assert sorted(path.name for path in tmp_path.iterdir()) == []
    finally:
        model.batcher.stop()
