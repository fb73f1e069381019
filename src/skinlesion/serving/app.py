"""The ASGI app: ``GET /ping``, ``POST /invocations`` and ``GET /execution-parameters``, plus
``GET /`` (a page to try the model in a browser) and ``GET /model`` (what the page shows of it).

A plain ASGI callable rather than a framework: two routes do not need routing, validation or
dependency injection, and owning the body loop lets a request over 6 MB be refused (413) before
it is read. The model loads on a background thread after start-up, so ``/ping`` answers 503
until it is ready and 200 after. A request's path: check the headers, read the body, split it
into encoded images, decode them on a thread pool (draft-mode JPEG, the preprocess job's
geometry), then await a shared micro-batch on the inference thread (:mod:`.batcher`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from skinlesion import patient
from skinlesion.capture import VARIANT_HEADER
from skinlesion.serving.requests import (
    ACCEPTED_ATTRIBUTES,
    CUSTOM_ATTRIBUTES_HEADER,
    RESPONSE_TYPE,
    ImageLimits,
    ParsedRequest,
    RequestError,
    check_accept,
    check_content_type,
    decode_image,
    parse_explain,
    parse_request,
)
from skinlesion.serving.runtime import split_output
from skinlesion.serving.settings import ServingSettings

if TYPE_CHECKING:
    from skinlesion.capture import CaptureWriter
    from skinlesion.clinical import OperatingPoint
    from skinlesion.models import Predictor
    from skinlesion.serving.batcher import MicroBatcher
    from skinlesion.serving.gradcam import GradCam

log = logging.getLogger(__name__)

PAGE_FILE = "try.html"  # package data next to this module
PAGE_TYPE = "text/html; charset=utf-8"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class LoadedModel:
    """What loading produces: the predictor, the fast runtime's batcher, and Grad-CAM."""

    predictor: Predictor
    runtime_name: str
    batcher: MicroBatcher
    gradcam: GradCam | None
    version: str
    classes: tuple[str, ...]
    image_size: int
    generated_data: bool = False  # trained on generated images (model.json's generated_data)
    operating_point: OperatingPoint | None = None  # the referral rule, when the bundle has one
    ood_threshold: float | None = None  # refuse above this OOD score, when the bundle has one

    @property
    def reads_metadata(self) -> bool:
        """Whether the network has a patient-metadata term (``ModelSpec.metadata``)."""
        return self.predictor.model.metadata_head is not None


def load_model(settings: ServingSettings) -> LoadedModel:
    """Load the bundle, build the runtime, warm it up at the batch sizes it will see."""
    from skinlesion.artifacts import resolve_model_dir
    from skinlesion.clinical import OperatingPoint
    from skinlesion.models import Predictor
    from skinlesion.serving.batcher import MicroBatcher
    from skinlesion.serving.gradcam import GradCam
    from skinlesion.serving.runtime import build_runtime

    started = time.perf_counter()
    # The unpacked archive is only read here: the predictor holds weights, spec and OOD
    # statistics in memory, so the scratch copy goes as soon as it is loaded.
    with tempfile.TemporaryDirectory(prefix="skinlesion-serve-") as scratch:
        model_dir = resolve_model_dir(settings.model_dir, Path(scratch))
        predictor = Predictor.load(model_dir, device="cpu")
    name, runtime = build_runtime(predictor, settings.runtime, threads=settings.threads or 1)
    size = predictor.spec.image_size
    for batch in sorted({1, settings.max_batch_size}):
        runtime(np.zeros((batch, size, size, 3), np.uint8))
    batcher = MicroBatcher(
        runtime, max_batch_size=settings.max_batch_size, max_wait_s=settings.max_wait_ms / 1000
    )
    batcher.start()
    gradcam = GradCam(predictor.model, size) if settings.explain else None
    version = settings.model_version or predictor.spec.version or "unversioned"
    spec = predictor.spec
    log.info(
        "Model %s (%s, %d px) ready on runtime %s with %d threads in %.1f s",
        version,
        predictor.spec.architecture,
        size,
        name,
        settings.threads,
        time.perf_counter() - started,
    )
    return LoadedModel(
        predictor,
        name,
        batcher,
        gradcam,
        version,
        tuple(predictor.spec.classes),
        size,
        predictor.spec.generated_data,
        OperatingPoint.from_dict(spec.operating_point) if spec.operating_point else None,
        float(spec.ood["threshold"]) if spec.ood else None,
    )


class ServingApp:
    """The ASGI application; ``loader`` is how the model is obtained (replaceable in tests)."""

    def __init__(
        self,
        settings: ServingSettings,
        *,
        loader: Callable[[ServingSettings], LoadedModel] = load_model,
        on_fatal: Callable[[BaseException], None] | None = None,
        load_in_background: bool = True,
    ):
        """``load_in_background``: serve (``/ping`` 503) while the model loads; False loads it
        during start-up, before the server accepts a connection (what each worker of a
        multi-worker server must do, or its siblings' 200 would send it traffic early)."""
        self.settings = settings
        self.limits = ImageLimits(settings.max_images, settings.max_pixels, settings.max_side)
        self.model: LoadedModel | None = None
        self.load_error: str = ""
        self.capture: CaptureWriter | None = None
        self._loader = loader
        self._on_fatal = on_fatal
        self._decoder = ThreadPoolExecutor(
            max_workers=max(1, settings.threads or 1), thread_name_prefix="decode"
        )
        self._explainer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explain")
        self._load_thread: threading.Thread | None = None
        self._load_in_background = load_in_background
        self._page: bytes | None = None

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open the capture writer and, when loading in the background, start loading."""
        if self.settings.capture_dir is not None and self.capture is None:
            from skinlesion.capture import CaptureWriter

            self.capture = CaptureWriter(
                self.settings.capture_dir,
                endpoint_name=self.settings.endpoint_name,
                variant_name=self.settings.variant_name,
                sampling_percentage=self.settings.capture_percentage,
            )
        if self._load_in_background and self._load_thread is None:
            self._load_thread = threading.Thread(target=self._load, name="load-model", daemon=True)
            self._load_thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until loading has finished (well or not); True when the model is ready."""
        if self._load_thread is not None:
            self._load_thread.join(timeout)
        return self.model is not None

    def _load(self) -> None:
        try:
            self.model = self._loader(self.settings)
        except Exception as error:  # reported on /ping and to on_fatal
            self.load_error = f"{type(error).__name__}: {error}"
            log.exception("The model could not be loaded from %s", self.settings.model_dir)
            if self._on_fatal is not None:
                self._on_fatal(error)

    def stop(self) -> None:
        if self.model is not None:
            self.model.batcher.stop()
        if self.capture is not None:
            self.capture.close()
        self._decoder.shutdown(wait=False, cancel_futures=True)
        self._explainer.shutdown(wait=False, cancel_futures=True)

    # --- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets: not served
        started = time.perf_counter()
        try:
            await self._route(scope, receive, send, started)
        except RequestError as error:
            await _send_quietly(send, error.status, error.to_json())
        except Exception:  # a bug must not take the worker down
            log.exception("Unhandled error on %s %s", scope.get("method"), scope.get("path"))
            body = {"error": "Internal error (logged on the server).", "accepted": ""}
            await _send_quietly(send, 500, json.dumps(body).encode())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                if not self._load_in_background:
                    await asyncio.get_running_loop().run_in_executor(None, self._load)
                    if self.model is None:
                        failed = {"type": "lifespan.startup.failed", "message": self.load_error}
                        await send(failed)
                        return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        path, method = scope["path"].rstrip("/") or "/", scope["method"]
        routes = {
            "/ping": ("GET", self._ping),
            "/invocations": ("POST", self._invocations),
            "/execution-parameters": ("GET", self._execution_parameters),
            "/": ("GET", self._try_page),
            "/model": ("GET", self._model_info),
        }
        if path not in routes:
            raise RequestError(
                404, f"No route {path[:100]!r}.", "GET /ping, POST /invocations, GET /, GET /model"
            )
        allowed, handler = routes[path]
        if method != allowed and not (method == "HEAD" and allowed == "GET"):
            raise RequestError(405, f"{method} is not allowed on {path}.", f"{allowed} {path}")
        await handler(scope, receive, send, started)

    async def _ping(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        if self.model is None:
            body = {"status": "failed", "error": self.load_error} if self.load_error else {}
            await _send(send, 503, json.dumps(body or {"status": "loading"}).encode())
            return
        body = {"status": "ok", "model_version": self.model.version}
        await _send(send, 200, json.dumps(body).encode())

    async def _try_page(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        # A static file shipped with the package: read once, on the first request.
        if self._page is None:
            from importlib.resources import files

            self._page = (files("skinlesion.serving") / PAGE_FILE).read_bytes()
        await _send(send, 200, self._page, content_type=PAGE_TYPE)

    async def _model_info(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        model = self.model
        if model is None:
            body = {"status": "failed", "error": self.load_error} if self.load_error else {}
            await _send(send, 503, json.dumps(body or {"status": "loading"}).encode())
            return
        info = {
            "model_version": model.version,
            "architecture": model.predictor.spec.architecture,
            "image_size": model.image_size,
            "classes": list(model.classes),
            "explain": model.gradcam is not None,
            "generated_data": model.generated_data,
            # Patient metadata: read when the network has the term; accepted (and ignored,
            # metadata_used false) otherwise.
            "reads_metadata": model.reads_metadata,
            "metadata_fields": {
                "age_approx": f"a number from 0 to {patient.MAX_AGE:g}",
                "sex": list(patient.SEXES),
                "anatom_site": list(patient.SITES),
            },
            "metadata_accepted": {
                "json": patient.ACCEPTED,
                "custom_attributes": ACCEPTED_ATTRIBUTES,
            },
        }
        await _send(send, 200, json.dumps(info).encode())

    async def _execution_parameters(
        self, scope: Scope, receive: Receive, send: Send, started: float
    ) -> None:
        # SageMaker batch transform asks this once to size its requests.
        body = {
            "MaxConcurrentTransforms": max(1, self.settings.workers) * 4,
            "BatchStrategy": "SINGLE_RECORD",
            "MaxPayloadInMB": self.settings.max_body_bytes // (1024 * 1024),
        }
        await _send(send, 200, json.dumps(body).encode())

    async def _invocations(
        self, scope: Scope, receive: Receive, send: Send, started: float
    ) -> None:
        headers = _headers(scope)
        check_accept(headers.get("accept"))
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.settings.max_body_bytes:
            raise _too_large(int(length), self.settings.max_body_bytes)
        kind = check_content_type(headers.get("content-type"))
        explain = parse_explain(scope.get("query_string", b""))
        model = self.model
        if model is None:
            raise RequestError(503, "The model is still loading.", "requests once /ping is 200")
        if explain and model.gradcam is None:
            raise RequestError(
                400, "Explanations are turned off on this endpoint.", "no explain parameter"
            )
        body = await _read_body(receive, self.settings.max_body_bytes)
        parsed = parse_request(body, kind, self.limits, headers.get(CUSTOM_ATTRIBUTES_HEADER))
        encoded = parsed.images

        loop = asyncio.get_running_loop()
        with model.batcher.expect():
            arrays, problems = await loop.run_in_executor(
                self._decoder, self._decode_all, encoded, model
            )
        probabilities, ood_scores = split_output(await model.batcher.predict(arrays))
        probabilities, used = _with_metadata(probabilities, parsed, model)
        predictions = _predictions(probabilities, ood_scores, problems, model)
        _describe_metadata(predictions, parsed, used, model)
        assessable = [i for i, p in enumerate(predictions) if p["assessable"]]
        if explain and assessable:
            # The top class after the metadata term; the term is constant per image, so the
            # image-only network's gradient for that class is its Grad-CAM (docs/serving.md).
            tops = [int(probabilities[i].argmax()) for i in assessable]
            maps = await loop.run_in_executor(
                self._explainer, self._explain, arrays[assessable], tops, model
            )
            for index, heatmap in zip(assessable, maps, strict=True):
                predictions[index]["explanation"] = heatmap
        event_id = str(uuid.uuid4())
        payload = {
            "predictions": predictions,
            "model_version": model.version,
            "architecture": model.predictor.spec.architecture,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        response = json.dumps(payload).encode()
        # The variant that answered, as SageMaker's InvokeEndpoint names it in its response.
        extra = [
            (b"x-event-id", event_id.encode()),
            (VARIANT_HEADER.encode(), self.settings.variant_name.encode()),
        ]
        await _send(send, 200, response, extra=extra)
        if self.capture is not None:
            self.capture.capture(
                body, headers.get("content-type", ""), response, RESPONSE_TYPE, event_id=event_id
            )

    def _decode_all(
        self, encoded: list[bytes], model: LoadedModel
    ) -> tuple[np.ndarray, list[str | None]]:
        """The decoded images, and per image why it cannot be assessed (None: it can)."""
        from skinlesion.clinical import image_check

        size = model.image_size
        out = np.empty((len(encoded), size, size, 3), np.uint8)
        for index, data in enumerate(encoded):
            which = index if len(encoded) > 1 else None
            out[index] = decode_image(data, size, self.limits, which)
        stats = model.predictor.model.ood_stats
        quality = stats.quality if stats is not None else None
        return out, [image_check(image, quality) for image in out]

    def _explain(
        self, arrays: np.ndarray, tops: list[int], model: LoadedModel
    ) -> list[dict[str, str]]:
        import base64

        from skinlesion.serving.gradcam import heatmap_png

        assert model.gradcam is not None  # checked before the body was read
        inputs = model.predictor.preprocess(arrays)
        maps = model.gradcam.heatmaps(inputs, tops)
        return [
            {
                "method": "gradcam",
                "class": model.classes[top],
                "layer": model.gradcam.layer_name,
                "heatmap_png_base64": base64.b64encode(heatmap_png(heatmap)).decode("ascii"),
            }
            for heatmap, top in zip(maps, tops, strict=True)
        ]


def _with_metadata(
    probabilities: np.ndarray, parsed: ParsedRequest, model: LoadedModel
) -> tuple[np.ndarray, list[bool]]:
    """The probabilities with the patient-metadata term applied, and per image whether it was.

    The runtimes compute the image-only network (an unknown patient); ``patient.adjust`` adds
    the metadata offsets exactly. Only images with at least one known field change; the others,
    and every image of a model without the term, keep the runtime's probabilities unchanged.
    """
    count = len(probabilities)
    rows = parsed.metadata_rows()
    if rows is None or not model.reads_metadata:
        return probabilities, [False] * count
    known = np.any(rows != patient.unknown_vector(), axis=1)
    if not known.any():
        return probabilities, [False] * count
    out = np.array(probabilities, dtype=np.float32, copy=True)
    offsets = model.predictor.metadata_offsets(rows[known])
    out[known] = patient.adjust(out[known], offsets, float(model.predictor.spec.temperature))
    return out, [bool(k) for k in known]


def _describe_metadata(
    predictions: list[dict[str, Any]],
    parsed: ParsedRequest,
    used: list[bool],
    model: LoadedModel,
) -> None:
    """Say per image whether patient metadata shaped the answer, and echo what was read.

    The echo keeps the metadata in data capture's output record too, where SageMaker's capture
    does not keep the CustomAttributes header of an image body.
    """
    for prediction, fields, applied in zip(predictions, parsed.metadata, used, strict=True):
        prediction["metadata_used"] = applied and prediction["assessable"]
        read = _known_fields(fields)
        if read:
            prediction["metadata"] = read
            if not model.reads_metadata:
                prediction["note"] = (
                    "This model does not read patient metadata; the answer is from the image alone."
                )


def _known_fields(fields: dict[str, Any] | None) -> dict[str, Any]:
    """The fields of one image's (already checked) metadata that are known, normalised."""
    vector = patient.encode(fields)
    read: dict[str, Any] = {}
    if not vector[1]:
        read["age_approx"] = float(fields["age_approx"])  # type: ignore[index]
    sex = vector[2 : 2 + len(patient.SEXES)]
    if sex.any():
        read["sex"] = patient.SEXES[int(sex.argmax())]
    site = vector[2 + len(patient.SEXES) :]
    if site.any():
        read["anatom_site"] = patient.SITES[int(site.argmax())]
    return read


def _predictions(
    probabilities: np.ndarray,
    ood_scores: np.ndarray,
    problems: list[str | None],
    model: LoadedModel,
) -> list[dict[str, Any]]:
    """One answer per image: a diagnosis with the referral decision, or a refusal with a reason.

    An image is refused (``assessable: false``) when the pixel check finds it blank or
    saturated, or when its OOD score is above the bundle's threshold: it is unlike the
    dermoscopy images the model was trained on, and its probabilities would mean nothing.
    """
    from skinlesion.clinical import malignancy_score, refusal_reason

    classes, point, limit = model.classes, model.operating_point, model.ood_threshold
    malignancy = (
        malignancy_score(probabilities, classes, point.malignant_classes)
        if point is not None
        else None
    )
    out: list[dict[str, Any]] = []
    for index, row in enumerate(probabilities.tolist()):
        ood = float(ood_scores[index])
        reason = refusal_reason(problems[index], ood, limit)
        if reason is not None:
            out.append({"assessable": False, "reason": reason, "ood_score": ood})
            continue
        top = int(np.argmax(row))
        prediction: dict[str, Any] = {
            "assessable": True,
            "probabilities": dict(zip(classes, row, strict=True)),
            "top_class": classes[top],
            "top_probability": row[top],
            "ood_score": ood,
        }
        if point is not None and malignancy is not None:
            prediction["malignancy_score"] = float(malignancy[index])
            prediction["referral_threshold"] = point.threshold
            prediction["refer"] = bool(malignancy[index] >= point.threshold)
        out.append(prediction)
    return out


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _too_large(size: int, limit: int) -> RequestError:
    return RequestError(
        413,
        f"The request body is {size:,} bytes or more.",
        f"at most {limit:,} bytes ({limit / 2**20:g} MiB, SageMaker's real-time limit)",
    )


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError(400, "The client disconnected before sending the body.", "")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(
    send: Send,
    status: int,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
    content_type: str = RESPONSE_TYPE,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_quietly(send: Send, status: int, body: bytes) -> None:
    # The error answer itself may fail (the client is gone, or a response had begun).
    try:
        await _send(send, status, body)
    except Exception as error:
        log.debug("Could not send the %d answer: %s", status, error)


__all__ = ["LoadedModel", "ServingApp", "load_model"]
