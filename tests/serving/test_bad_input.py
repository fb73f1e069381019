"""Bad input over real HTTP: every kind gets a 4xx JSON answer, the server stays up, memory flat."""

from __future__ import annotations

import base64
import io
import json
import socket
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.serving.conftest import RunningServer, jpeg_bytes, png_bomb, png_bytes

SIX_MB = 6 * 1024 * 1024


def picture() -> np.ndarray:
    from skinlesion.data.sample import render_lesion_image

    return np.ascontiguousarray(render_lesion_image("NV", size=120, seed=5)[:90])


def bad_requests() -> dict[str, tuple[dict[str, str], bytes, int]]:
    """name -> (headers, body, expected status)."""
    good = jpeg_bytes(picture())
    sof = bytearray(good)
    at = sof.index(b"\xff\xc0")
    sof[at + 5 : at + 9] = (60000).to_bytes(2, "big") * 2
    jpeg, png, js = (
        {"Content-Type": "image/jpeg"},
        {"Content-Type": "image/png"},
        {"Content-Type": "application/json"},
    )
    b64 = base64.b64encode(good).decode()
    return {
        "empty body": (jpeg, b"", 400),
        "truncated jpeg": (jpeg, good[: len(good) // 3], 400),
        "corrupt jpeg": (jpeg, good[:20] + bytes(range(256)) * 8, 400),
        "non-image bytes": (jpeg, b"%PDF-1.7\n" + b"x" * 2000, 400),
        "text as png": (png, b"hello, world", 400),
        "wrong content type": ({"Content-Type": "text/plain"}, good, 415),
        "gif content type": ({"Content-Type": "image/gif"}, good, 415),
        "missing content type": ({}, good, 415),
        "png bomb": (png, png_bomb(8_000, 8_000), 400),
        "past pillow's bomb limit": (png, png_bomb(20_000, 20_000, pixels=False), 400),
        "absurd jpeg dimensions": (jpeg, bytes(sof), 400),
        "malformed json": (js, b'{"image": ', 400),
        "json of the wrong shape": (js, b'{"images": []}', 400),
        "json with bad base64": (js, b'{"image": "not base64!"}', 400),
        "json holding a non-image": (
            js,
            json.dumps({"image": base64.b64encode(b"GIF89a").decode()}).encode(),
            400,
        ),
        "too many images": (js, json.dumps({"instances": [{"b64": b64}] * 17}).encode(), 400),
        "deeply nested json": (js, b"[" * 200_000 + b"]" * 200_000, 400),
        "unknown explanation": ({**jpeg}, good, 400),  # sent with ?explain=shap below
    }


CASES = bad_requests()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_a_4xx_json_error(client: httpx.Client, name: str) -> None:
    headers, body, status = CASES[name]
    url = "/invocations?explain=shap" if name == "unknown explanation" else "/invocations"
    request = client.build_request("POST", url, content=body, headers=headers)
    if "Content-Type" not in headers:
        request.headers.pop("Content-Type", None)
    response = client.send(request)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert set(answer) == {"error", "accepted"}
    assert answer["error"] and answer["accepted"]


def test_a_body_over_6_mb_is_413_before_it_is_read(client: httpx.Client) -> None:
    body = b"\xff\xd8\xff" + b"\x00" * SIX_MB
    response = client.post("/invocations", content=body, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413
    assert "6,291,456 bytes" in response.json()["accepted"]


def test_a_chunked_body_over_6_mb_is_413(client: httpx.Client) -> None:
    def chunks():  # no Content-Length: the server counts as it reads
        for _ in range(7):
            yield b"\x00" * (1024 * 1024)

    response = client.post("/invocations", content=chunks(), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413


def test_a_lying_content_length_does_not_hang_or_crash(server: RunningServer) -> None:
    address = urlparse(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 50\r\n\r\nshort"
        )
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(65536)
    assert not answer.startswith(b"HTTP/1.1 5")
    assert httpx.get(f"{server.url}/ping").status_code == 200


def test_odd_but_valid_images_are_answered(client: httpx.Client) -> None:
    rgb = picture()
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, format="JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6
    sixteen = Image.fromarray((np.arange(90 * 120).reshape(90, 120) * 6).astype(np.uint16))
    images: dict[str, tuple[str, bytes]] = {
        "cmyk jpeg": ("image/jpeg", cmyk.getvalue()),
        "16-bit png": ("image/png", png_bytes(sixteen)),
        "palette png": (
            "image/png",
            png_bytes(Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE)),
        ),
        "palette with transparency": (
            "image/png",
            png_bytes(
                Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE), transparency=0
            ),
        ),
        "rgba png": (
            "image/png",
            png_bytes(Image.fromarray(np.dstack([rgb, rgb[..., 0]]), "RGBA")),
        ),
        "greyscale jpeg": ("image/jpeg", jpeg_bytes(rgb[..., 0])),
        "exif-rotated jpeg": (
            "image/jpeg",
            jpeg_bytes(np.ascontiguousarray(np.rot90(rgb)), exif=exif),
        ),
        "progressive jpeg": ("image/jpeg", jpeg_bytes(rgb, progressive=True)),
        "1x1 png": ("image/png", png_bytes(Image.new("RGB", (1, 1), (200, 100, 50)))),
        "png sent as x-image": ("application/x-image", png_bytes(Image.fromarray(rgb))),
        "jpeg sent as png": ("image/png", jpeg_bytes(rgb)),
    }
    for name, (content_type, data) in images.items():
        response = client.post("/invocations", content=data, headers={"Content-Type": content_type})
        assert response.status_code == 200, f"{name}: {response.text}"


def test_exif_rotation_is_honoured_over_http(client: httpx.Client) -> None:
    rgb = picture()

    def top(data: bytes) -> dict[str, float]:
        response = client.post("/invocations", content=data, headers={"Content-Type": "image/png"})
        return response.json()["predictions"][0]["probabilities"]

    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned; a viewer (and the server) turns it back
    upright = top(png_bytes(Image.fromarray(rgb)))
    rotated = top(png_bytes(Image.fromarray(np.ascontiguousarray(np.rot90(rgb))), exif=exif))
    assert rotated == pytest.approx(upright, abs=1e-6)


def test_the_server_stays_healthy_and_its_memory_flat(
    server: RunningServer, client: httpx.Client
) -> None:
    names = [n for n in CASES if n != "unknown explanation"]

    def one_round() -> None:
        for name in names:
            headers, body, _ = CASES[name]
            request = client.build_request("POST", "/invocations", content=body, headers=headers)
            assert client.send(request).status_code < 500
        big = b"\x00" * (SIX_MB + 1)
        assert (
            client.post(
                "/invocations", content=big, headers={"Content-Type": "image/jpeg"}
            ).status_code
            == 413
        )

    one_round()
    one_round()  # allocator pools and caches settle
    settled = server.rss()
    for _ in range(8):
        one_round()
    grown = server.rss() - settled
    assert grown < 64 * 1024 * 1024, (
        f"RSS grew by {grown / 2**20:.1f} MiB over 8 rounds of bad input"
    )
    assert server.process.poll() is None
    assert client.get("/ping").status_code == 200
    good = jpeg_bytes(picture())
    assert (
        client.post(
            "/invocations", content=good, headers={"Content-Type": "image/jpeg"}
        ).status_code
        == 200
    )


def test_a_bad_image_among_several_is_named(client: httpx.Client) -> None:
    good = base64.b64encode(jpeg_bytes(picture())).decode()
    bad = base64.b64encode(b"\x89PNG\r\n\x1a\nbroken").decode()
    response = client.post("/invocations", json={"instances": [{"b64": good}, {"b64": bad}]})
    assert response.status_code == 400
    assert response.json()["error"].startswith("Image 1 could not be decoded")
