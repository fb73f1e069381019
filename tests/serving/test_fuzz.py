"""Property-based fuzzing of /invocations over real HTTP: whatever arrives, never a 5xx."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# What an HTTP client can put in a header value: printable ASCII, no surrounding blanks.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(
    str.strip
)


def mostly(
    common: st.SearchStrategy[str | None], rare: st.SearchStrategy[str | None]
) -> st.SearchStrategy[str | None]:
    """``common`` four times in five, so that most examples reach the body parser."""
    return st.integers(0, 4).flatmap(lambda i: rare if i == 0 else common)


CONTENT_TYPES = mostly(
    st.sampled_from(
        ["image/jpeg", "image/png", "application/x-image", "application/json", "IMAGE/JPEG; x=1"]
    ),
    st.one_of(
        st.none(),
        st.sampled_from(["text/plain", "multipart/form-data; boundary=x", ""]),
        HEADER_TEXT,
    ),
)
ACCEPTS = mostly(
    st.sampled_from([None, "*/*", "application/json", "text/csv;q=0.5, */*;q=0.1"]),
    st.one_of(st.sampled_from(["text/csv", "application/json;q=0", "*/*;q=abc"]), HEADER_TEXT),
)
QUERIES = st.one_of(
    st.sampled_from(
        ["", "explain=gradcam", "explain=GradCAM", "explain=", "explain=%ff%fe", "x=1&explain=none"]
    ),
    HEADER_TEXT.map(lambda text: text.replace("#", "")),
)


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """Truncations, byte flips and insertions of a valid encoded image."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        body = bytearray(data)
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["flip", "cut", "insert"]))
            at = draw(st.integers(0, max(0, len(body) - 1)))
            if kind == "flip" and body:
                body[at] ^= draw(st.integers(1, 255))
            elif kind == "cut":
                del body[at : at + draw(st.integers(1, 512))]
            else:
                body[at:at] = draw(st.binary(min_size=1, max_size=64))
        return bytes(body)

    return mutate()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def bodies(image: bytes) -> st.SearchStrategy[bytes]:
    encoded = base64.b64encode(image).decode()
    return st.one_of(
        st.binary(max_size=2048),
        mutated(image),
        st.just(image),
        mutated(image).map(lambda b: json.dumps({"image": base64.b64encode(b).decode()}).encode()),
        st.lists(st.sampled_from([encoded, "", "@@", encoded[:-3]]), max_size=18).map(
            lambda items: json.dumps({"instances": [{"b64": i} for i in items]}).encode()
        ),
        JSON_VALUES.map(lambda value: json.dumps(value).encode()),
        st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


@pytest.fixture(scope="module")
def image_bytes(sample_jpegs: list[Path]) -> bytes:
    return sample_jpegs[0].read_bytes()


def test_no_request_gets_a_5xx(client: httpx.Client, image_bytes: bytes) -> None:
    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        body=bodies(image_bytes),
        content_type=CONTENT_TYPES,
        accept=ACCEPTS,
        query=QUERIES,
    )
    def check(body: bytes, content_type: str | None, accept: str | None, query: str) -> None:
        headers = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if accept is not None:
            headers["Accept"] = accept
        request = client.build_request(
            "POST", f"/invocations?{query}", content=body, headers=headers
        )
        if content_type is None:
            request.headers.pop("Content-Type", None)
        response = client.send(request)
        assert response.status_code < 500, response.text
        answer = response.json()
        if response.status_code == 200:
            assert answer["predictions"] and "model_version" in answer
        else:
            assert 400 <= response.status_code < 500
            assert set(answer) == {"error", "accepted"}

    check()
    assert client.get("/ping").status_code == 200
