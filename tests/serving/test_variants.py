"""Champion and challenger on the local endpoint: two serving processes behind the router, real
HTTP. Requests split 70/30 by smooth weighted round robin, the answering variant named in
SageMaker's ``X-Amzn-Invoked-Production-Variant`` header, each variant's capture under
``<capture>/<endpoint>/<variant>/`` (where SageMaker writes it), and a traffic shift honoured."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from skinlesion import steps
from skinlesion.artifacts import MODEL_ARCHIVE, pack_model
from skinlesion.backends.base import ApprovalStatus, DeployRequest
from skinlesion.capture import VARIANT_HEADER, iter_capture_records
from skinlesion.serving.router import Route, WeightedRoundRobin

ENDPOINT = "variants-test"


def test_smooth_weighted_round_robin_follows_the_weights_exactly() -> None:
    balancer = WeightedRoundRobin([Route("AllTraffic", "u1", 0.7), Route("Challenger", "u2", 0.3)])
    picks = [balancer.pick().name for _ in range(10)]
    assert Counter(picks) == {"AllTraffic": 7, "Challenger": 3}
    # Spread out, not seven then three: no run of more than three champion answers.
    assert "AllTraffic" * 4 not in "".join(
        "AllTraffic" if p == "AllTraffic" else "|" for p in picks
    )
    zero = WeightedRoundRobin([Route("AllTraffic", "u1", 1.0), Route("Challenger", "u2", 0.0)])
    assert {zero.pick().name for _ in range(5)} == {"AllTraffic"}


def _captured(folder: Path, expected: int, timeout: float = 30.0) -> dict[str, str]:
    """eventId -> model_version of a variant's capture, once the writer has written them all."""
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        if folder.exists():
            found = {
                r.event_id: r.output_json()["model_version"] for r in iter_capture_records(folder)
            }
            if len(found) >= expected:
                break
        time.sleep(0.2)
    return found


@pytest.mark.slow
def test_the_local_endpoint_splits_requests_between_champion_and_challenger(
    fitted_serving_model: Path,
    sample_jpegs: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from skinlesion.backends.local import LocalBackend

    monkeypatch.setenv("SKINLESION_LOCAL_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("SKINLESION_ONNX_CACHE", str(tmp_path / "onnx-cache"))
    backend = LocalBackend.from_environment()
    archive = pack_model(fitted_serving_model, tmp_path / "artifact" / MODEL_ARCHIVE)
    champion, challenger = (
        backend.registry.create_version(
            "variants",
            model_data_uri=str(archive),
            metrics={"balanced_accuracy": score},
            metadata={},
            approval_status=ApprovalStatus.APPROVED,
        )
        for score in (0.6, 0.61)
    )
    endpoint = backend.deploy(
        DeployRequest(
            model_version_arn=champion.arn,
            endpoint_name=ENDPOINT,
            challenger_model_version_arn=challenger.arn,
            challenger_traffic_percent=30,
        )
    )
    try:
        assert [
            (v.name, v.model_version_arn, v.share) for v in backend.describe_variants(ENDPOINT)
        ] == [
            ("AllTraffic", champion.arn, pytest.approx(0.7)),
            ("Challenger", challenger.arn, pytest.approx(0.3)),
        ]
        answered: dict[str, list[str]] = {"AllTraffic": [], "Challenger": []}
        tops: dict[str, dict[str, Any]] = {}
        served = {
            "AllTraffic": f"variants/{champion.version}",
            "Challenger": f"variants/{challenger.version}",
        }
        with httpx.Client(base_url=endpoint.url, timeout=60) as http:
            assert http.get("/ping").status_code == 200
            for index in range(20):
                body = sample_jpegs[index % len(sample_jpegs)].read_bytes()
                response = http.post(
                    "/invocations", content=body, headers={"content-type": "image/jpeg"}
                )
                assert response.status_code == 200, response.text
                variant = response.headers[VARIANT_HEADER]
                # The variant named is the one whose model answered.
                assert response.json()["model_version"] == served[variant]
                answered[variant].append(response.headers["x-event-id"])
                tops[response.headers["x-event-id"]] = response.json()["predictions"][0]
            assert {k: len(v) for k, v in answered.items()} == {"AllTraffic": 14, "Challenger": 6}
            # A refusal still comes back through the router with the variant's status.
            refused = http.post("/invocations", content=b"x", headers={"content-type": "text/csv"})
            assert refused.status_code == 415

            capture = Path(endpoint.capture_uri) / ENDPOINT
            for variant, event_ids in answered.items():
                records = _captured(capture / variant, len(event_ids))
                assert sorted(records) == sorted(event_ids)
                assert set(records.values()) == {served[variant]}

            # Promotion's other direction: the challenger dropped to 0, the champion takes all.
            shifted = backend.set_traffic(ENDPOINT, {"Challenger": 0})
            assert [(v.name, v.share) for v in shifted] == [
                ("AllTraffic", 1.0),
                ("Challenger", 0.0),
            ]
            headers = {
                http.post(
                    "/invocations",
                    content=sample_jpegs[0].read_bytes(),
                    headers={"content-type": "image/jpeg"},
                ).headers[VARIANT_HEADER]
                for _ in range(4)
            }
            assert headers == {"AllTraffic"}
            with pytest.raises(ValueError, match="no variant 'Nope'"):
                backend.set_traffic(ENDPOINT, {"Nope": 1})

        # Ground truth arrives: the challenger's answers were right, the champion's wrong.
        labels = tmp_path / "labels.csv"
        rows = ["eventId,label"]
        for variant, event_ids in answered.items():
            for event_id in event_ids:
                top = str(tops[event_id]["top_class"])
                other = next(c for c in tops[event_id]["probabilities"] if c != top)
                rows.append(f"{event_id},{top if variant == 'Challenger' else other}")
        labels.write_text("\n".join(rows) + "\n")
        decision = steps.promote_challenger(
            backend="local",
            endpoint_name=ENDPOINT,
            labels_uri=str(labels),
            min_requests=5,
            min_labelled=5,
            margin=0.05,
            instance_type="ml.m5.large",
            min_instances=1,
            max_instances=1,
        )
        assert decision == "promote"
        [alone] = backend.describe_variants(ENDPOINT)
        assert (alone.name, alone.model_version_arn, alone.share) == (
            "AllTraffic",
            challenger.arn,
            1.0,
        )
        promoted = backend.describe_endpoint(ENDPOINT)
        with httpx.Client(base_url=promoted.url, timeout=60) as http:
            response = http.post(
                "/invocations",
                content=sample_jpegs[0].read_bytes(),
                headers={"content-type": "image/jpeg"},
            )
        assert response.json()["model_version"] == served["Challenger"]
        # The two-variant endpoint's processes were stopped once the winner served alone.
        for pid in (
            endpoint.details["pid"],
            *(v["pid"] for v in endpoint.details["variants"].values()),
        ):
            assert not _alive(int(pid))
    finally:
        backend.delete_endpoint(ENDPOINT)
    pids = [endpoint.details["pid"], *(v["pid"] for v in endpoint.details["variants"].values())]
    assert len(set(pids)) == 3
    assert not _alive(int(promoted.details["pid"]))


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()
