"""The naive baseline: the same model in a plain FastAPI app that serves one request at a time.

What a first version of an endpoint looks like: an ``async`` handler that decodes the image and
calls ``Predictor.predict_proba`` on the event loop, so requests run strictly one after another,
each as a batch of one, in eager PyTorch (fp32). It decodes exactly as the real app does, so the
comparison isolates batching, the runtime and the app itself. Started by the benchmark as::

    BENCH_MODEL_DIR=<bundle> uvicorn bench.serving.baseline:create_app --factory --port 8081
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# At module level: FastAPI resolves the handler's (postponed) annotations from these globals.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def create_app() -> FastAPI:
    """The FastAPI app for the model bundle in ``BENCH_MODEL_DIR``."""
    from skinlesion.data.images import decode_image_bytes
    from skinlesion.models import Predictor

    predictor = Predictor.load(
        Path(os.environ["BENCH_MODEL_DIR"]), precision=os.environ.get("BENCH_PRECISION", "fp32")
    )
    classes = predictor.spec.classes
    size = predictor.spec.image_size
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/invocations")
    async def invocations(request: Request) -> JSONResponse:
        started = time.perf_counter()
        body = await request.body()
        try:
            image = decode_image_bytes(body, size)
        except Exception as error:  # the baseline's whole error handling
            return JSONResponse({"error": str(error)}, status_code=400)
        probabilities = predictor.predict_proba(image[None])[0].tolist()
        top = max(range(len(classes)), key=probabilities.__getitem__)
        return JSONResponse(
            {
                "predictions": [
                    {
                        "probabilities": dict(zip(classes, probabilities, strict=True)),
                        "top_class": classes[top],
                        "top_probability": probabilities[top],
                    }
                ],
                "latency_ms": (time.perf_counter() - started) * 1000,
            }
        )

    return app
