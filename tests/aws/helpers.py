"""Helpers of the SageMaker backend tests: test settings, offline clients, a recording proxy."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from tests.aws.moto_server import ACCOUNT, REGION

from skinlesion.aws import AwsClients
from skinlesion.backends.base import RegisterRequest
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.settings import Settings

ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/skinlesion-test-sagemaker"
TEST_GROUP = "skinlesion-test"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
BUCKETS = {
    "data_bucket": "skinlesion-test-data",
    "processed_bucket": "skinlesion-test-processed",
    "models_bucket": "skinlesion-test-models",
    "capture_bucket": "skinlesion-test-capture",
}


def make_settings(endpoint_url: str = "", **overrides: Any) -> Settings:
    """Settings as Terraform would output them for a test account."""
    values: dict[str, Any] = {
        "region": REGION,
        "name_prefix": "skl-test",
        **BUCKETS,
        "pipeline_root": f"s3://{BUCKETS['models_bucket']}/pipeline-root",
        "sagemaker_execution_role_arn": ROLE_ARN,
        "training_image_repository_url": f"{REGISTRY}/skinlesion-training",
        "inference_image_repository_url": f"{REGISTRY}/skinlesion-inference",
        "pipeline_image_repository_url": f"{REGISTRY}/skinlesion-pipeline",
        "model_package_group_name": "skinlesion-test",
        "image_tag": "0.1.0",
        "endpoint_url": endpoint_url,
        "poll_seconds": 0.01,
        "max_api_attempts": 3,
        # The dev account, where the pipeline may approve (prod: false, the default).
        "auto_approve": True,
    }
    values.update(overrides)
    return Settings(**values)


def offline_client(service: str) -> Any:
    """A client for botocore's Stubber: fake credentials, no endpoint is ever reached."""
    return boto3.client(
        service, region_name=REGION, aws_access_key_id="stub", aws_secret_access_key="stub"
    )


def put(s3: Any, uri: str, body: bytes = b"x") -> str:
    """Write an object at an s3:// URI; returns the URI."""
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return uri


def registered(
    backend: SageMakerBackend,
    clients: AwsClients,
    run: str,
    balanced_accuracy: float,
    **kwargs: Any,
) -> Any:
    """Register a version of run ``run`` as the pipeline would: model.tar.gz and metrics in S3."""
    s3 = clients.client("s3")
    model = f"s3://{BUCKETS['models_bucket']}/runs/{run}/train/model"
    put(s3, f"{model}/skl-train-{run}/output/model.tar.gz")
    evaluation = f"s3://{BUCKETS['models_bucket']}/runs/{run}/evaluate/evaluation"
    put(
        s3,
        f"{evaluation}/metrics.json",
        json.dumps({"balanced_accuracy": balanced_accuracy}).encode(),
    )
    return backend.register(
        RegisterRequest(
            model_uri=model,
            evaluation_uri=evaluation,
            model_group=TEST_GROUP,
            metrics={"balanced_accuracy": balanced_accuracy, "accuracy": 0.9},
            data_uri=f"s3://{BUCKETS['data_bucket']}/isic2019/",
            architecture="efficientnet_lite0",
            git_commit="0123abcd",
            run_id=run,
            **kwargs,
        )
    )


class RecordingProxy:
    """An HTTP proxy in front of moto that records each request and can throttle the first ones.

    botocore's retries happen below the Stubber (a stubbed error is never retried), so retrying
    is tested over real HTTP: the proxy answers ``throttle`` matching requests with SageMaker's
    ThrottlingException and forwards the rest to moto unchanged.
    """

    def __init__(self, upstream: str, *, throttle: int = 0, throttle_target: str = "") -> None:
        self.upstream = upstream
        self.throttle = throttle
        self.throttle_target = throttle_target
        self.requests: list[dict[str, Any]] = []
        self.throttled = 0
        self._server: Any = None
        self._thread: Any = None

    def __enter__(self) -> RecordingProxy:

        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:
                proxy._handle(self)

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_PUT(self) -> None:
                proxy._handle(self)

            def do_HEAD(self) -> None:
                proxy._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def targets(self) -> list[str]:
        """The X-Amz-Target (JSON protocols) or Action (query protocols) of each request."""
        return [r["target"] for r in self.requests]

    def _handle(self, handler: Any) -> None:

        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        target = handler.headers.get("X-Amz-Target", "")
        if not target and body:
            target = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
        self.requests.append(
            {"target": target, "headers": dict(handler.headers), "path": handler.path}
        )
        if self.throttled < self.throttle and target.endswith(self.throttle_target):
            self.throttled += 1
            payload = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
            handler.send_response(400)
            handler.send_header("Content-Type", "application/x-amz-json-1.1")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        headers = {
            k: v for k, v in handler.headers.items() if k.lower() not in ("host", "content-length")
        }
        request = urllib.request.Request(
            self.upstream + handler.path, data=body or None, headers=headers, method=handler.command
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, reply_headers, payload = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, reply_headers, payload = error.code, error.headers, error.read()
        handler.send_response(status)
        for key, value in reply_headers.items():
            if key.lower() not in (
                "content-length",
                "transfer-encoding",
                "connection",
                "date",
                "server",
            ):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)
