"""The evaluate processing job: score a model on a dataset split, write metrics and a report.

Runs as a SageMaker processing job (``python -m skinlesion.jobs.evaluate``, paths under
``/opt/ml/processing``) and as a local subprocess, unchanged. Outputs, in ``--output``:

    metrics.json              flat scalar metrics (balanced_accuracy, auc_MEL, ...; null if undefined)
    evaluation.json           the full result: confusion matrix, ROC curves, reliability bins, and a
                              ``multiclass_classification_metrics`` block in the layout of SageMaker's
                              model quality statistics (the model package's ModelMetrics source)
    predictions.csv           image, lesion_id, true_label, predicted_label, one probability per class
    report.html               the self-contained HTML report (with Grad-CAM of the
                              most confident mistakes)
    kfp_metrics.json          finite scalars by name, for KFP ``Metrics.log_metric``
    kfp_classification.json   ``confusion_matrix`` {categories, matrix} for
                              ``ClassificationMetrics.log_confusion_matrix`` and ``roc``
                              {class, fpr, tpr, thresholds} for ``log_roc_curve``

The balanced accuracy is also computed by the ISIC challenge's reference scorer; the job fails,
writing nothing, if the two differ by more than 1e-6.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from skinlesion import patient
from skinlesion.config import PRECISIONS
from skinlesion.contract import JobKind, run_job
from skinlesion.data.store import SPLITS, read_manifest, read_split, read_split_metadata
from skinlesion.jobs.arguments import add_dataset_model_output, job_parser
from skinlesion.logs import configure_logging
from skinlesion.metrics import (
    EvaluationResult,
    check_against_reference,
    evaluate_predictions,
    isic_balanced_accuracy,
    operating_point_metrics,
    reliability_bins,
    subgroup_metrics,
)
from skinlesion.model_card import MODEL_CARD_HTML, MODEL_CARD_MARKDOWN, write_model_card

if TYPE_CHECKING:
    from skinlesion.artifacts import ModelSpec
    from skinlesion.clinical import QualityStats
    from skinlesion.crossval import CrossValidation
    from skinlesion.data.store import SplitArrays
    from skinlesion.evaluation_report import ExplainedMistake, MisclassifiedExample
    from skinlesion.models import Predictor

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
EVALUATION_FILE = "evaluation.json"
PREDICTIONS_FILE = "predictions.csv"
REPORT_FILE = "report.html"
KFP_METRICS_FILE = "kfp_metrics.json"
KFP_CLASSIFICATION_FILE = "kfp_classification.json"
OUTPUT_FILES = (
    MODEL_CARD_MARKDOWN,
    MODEL_CARD_HTML,
    METRICS_FILE,
    EVALUATION_FILE,
    PREDICTIONS_FILE,
    REPORT_FILE,
    KFP_METRICS_FILE,
    KFP_CLASSIFICATION_FILE,
)

DEFAULT_ROC_CLASS = "MEL"
# Grad-CAM costs a forward and a backward pass per image: only the most confident mistakes.
GRADCAM_EXAMPLES = 6


def get_args_parser() -> argparse.ArgumentParser:
    """The job's arguments (the ProcessingJob's ContainerArguments)."""
    return job_parser(
        "skinlesion.jobs.evaluate",
        "Evaluate a model bundle on a preprocessed dataset split.",
        add_arguments,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the job's options to ``parser`` (shared by the job and the ``skinlesion`` CLI)."""
    add_dataset_model_output(parser, "evaluation", "the evaluation files")
    parser.add_argument(
        "--split", default="test", choices=SPLITS, help="which split to score (default test)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="images per forward pass (default 64)"
    )
    parser.add_argument(
        "--roc-class",
        default=DEFAULT_ROC_CLASS,
        help=f"the class whose ROC curve goes to KFP (default {DEFAULT_ROC_CLASS})",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N"
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="inference precision (default fp32: bf16 logits tie often enough to cost hits)",
    )


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(
    dataset_dir: Path,
    model_path: Path,
    output_dir: Path,
    split: str = "test",
    batch_size: int = 64,
    *,
    roc_class: str = DEFAULT_ROC_CLASS,
    device: str = "auto",
    precision: str = "fp32",
    gradcam_examples: int = GRADCAM_EXAMPLES,
) -> dict[str, Any]:
    """Evaluate the model at ``model_path`` on ``split``; write the outputs; return metrics.json.

    The report explains the ``gradcam_examples`` most confident mistakes with Grad-CAM.
    """
    from skinlesion.artifacts import resolve_model_dir
    from skinlesion.evaluation_report import select_misclassified, write_report
    from skinlesion.models import Predictor

    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Accepted: {', '.join(SPLITS)}.")
    if batch_size < 1:
        raise ValueError(f"Invalid batch_size {batch_size}: must be >= 1.")
    if gradcam_examples < 0:
        raise ValueError(f"Invalid gradcam_examples {gradcam_examples}: must be >= 0.")
    dataset_dir, output_dir = Path(dataset_dir), Path(output_dir)
    manifest = read_manifest(dataset_dir)
    # Loaded, not memory-mapped: every image is read anyway, and torch wants writable arrays.
    data = read_split(dataset_dir, split, mmap=False)
    if len(data) == 0:
        raise ValueError(f"The {split!r} split of {dataset_dir} is empty: nothing to evaluate.")

    with tempfile.TemporaryDirectory(prefix="skinlesion-model-") as scratch:
        model_dir = resolve_model_dir(Path(model_path), Path(scratch))
        predictor = Predictor.load(model_dir, device=_device(device), precision=precision)
        spec = predictor.spec
        classes = tuple(spec.classes)
        dataset_classes = tuple(manifest.get("classes", classes))
        if dataset_classes != classes:
            raise ValueError(
                f"The model's classes {list(classes)} differ from the dataset's "
                f"{list(dataset_classes)}; labels would be misread. Evaluate a model trained on "
                "this label set."
            )
        if roc_class not in classes:
            raise ValueError(f"Invalid roc_class {roc_class!r}. Accepted: {', '.join(classes)}.")
        log.info(
            "Scoring %d %s images with %s (%d px) in batches of %d",
            len(data),
            split,
            spec.architecture,
            spec.image_size,
            batch_size,
        )
        split_rows = read_split_metadata(dataset_dir, split)
        metadata = patient.encode_rows(data.image_ids, split_rows) if spec.metadata else None
        logits, embeddings = predictor.logits_with_embeddings(
            data.images, batch_size=batch_size, metadata=metadata
        )
        probabilities = softmax(logits / float(spec.temperature))
        image_only = None
        if metadata is not None:
            # What a request without metadata gets: the same network, every patient unknown.
            image_only = softmax(
                (logits - predictor.metadata_offsets(metadata)) / float(spec.temperature)
            )
        ood_scores = predictor.ood_scores(embeddings)
        stats = predictor.model.ood_stats
        quality = stats.quality if stats is not None else None
        held_out = held_out_cross_validation(
            predictor, dataset_dir, split, data, embeddings, metadata, batch_size
        )

    labels = np.asarray(data.labels, dtype=np.int64)
    result = evaluate_predictions(labels, probabilities, classes)
    reference = isic_balanced_accuracy(labels, probabilities, classes)
    check_against_reference(result, reference)
    log.info(
        "Balanced accuracy %.4f (ISIC scorer %.4f), macro AUC %.4f, ECE %.4f on %d images",
        result.balanced_accuracy,
        reference,
        result.macro_auc,
        result.ece,
        result.n_samples,
    )

    metrics = flat_metrics(result, reference, split)
    if image_only is not None:
        without = evaluate_predictions(labels, image_only, classes)
        metrics["balanced_accuracy_image_only"] = without.balanced_accuracy
        metrics["sensitivity_MEL_image_only"] = next(
            (c.sensitivity for c in without.per_class if c.name == "MEL"), float("nan")
        )
        log.info(
            "Without the patient metadata (image only): balanced accuracy %.4f",
            without.balanced_accuracy,
        )
    if held_out is not None:
        metrics["cv_balanced_accuracy"] = held_out.balanced_accuracy
        metrics["cv_balanced_accuracy_low"], metrics["cv_balanced_accuracy_high"] = held_out.ci95
        metrics["cv_sensitivity_MEL"] = held_out.melanoma_sensitivity
    clinical = clinical_evaluation(
        spec,
        labels,
        probabilities,
        softmax(logits),
        ood_scores,
        np.asarray(data.images),
        metadata=split_rows,
        image_ids=data.image_ids,
        train_images=_train_images(dataset_dir),
        quality=quality,
    )
    metrics.update(clinical["flat_metrics"])
    clinical["cross_validation"] = held_out.to_dict() if held_out is not None else None
    clinical["image_only"] = (
        {
            "balanced_accuracy": metrics["balanced_accuracy_image_only"],
            "melanoma_sensitivity": metrics["sensitivity_MEL_image_only"],
        }
        if image_only is not None
        else None
    )
    spec_dict = asdict(spec)
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_json(output_dir / METRICS_FILE, metrics)
    _write_json(
        output_dir / EVALUATION_FILE,
        {
            "split": split,
            "dataset": str(dataset_dir),
            "model": spec_dict,
            "metrics": metrics,
            "result": result.to_dict(),
            "multiclass_classification_metrics": model_quality_statistics(result),
            "clinical": clinical,
        },
    )
    write_predictions(
        output_dir / PREDICTIONS_FILE,
        data.image_ids,
        data.lesion_ids,
        labels,
        probabilities,
        classes,
    )
    _write_json(output_dir / KFP_METRICS_FILE, kfp_metrics(metrics))
    _write_json(output_dir / KFP_CLASSIFICATION_FILE, kfp_classification(result, roc_class))
    misclassified = select_misclassified(
        data.images, labels, probabilities, data.image_ids, classes
    )
    write_report(
        output_dir / REPORT_FILE,
        result,
        reference_balanced_accuracy=reference,
        model_spec=spec_dict,
        manifest=manifest,
        misclassified=misclassified,
        explained=explain_mistakes(predictor, misclassified[:gradcam_examples]),
        subtitle=f"{spec.architecture} {spec.version}".strip() + f" on the {split} split",
        clinical=clinical,
    )
    write_model_card(output_dir, spec_dict, metrics, clinical, manifest, split)
    log.info("Wrote %s to %s", ", ".join(OUTPUT_FILES), output_dir)
    return metrics


# Training images whose skin tone is estimated for the report (an even subsample beyond this).
SKIN_TONE_TRAIN_SAMPLE = 3000
SUBGROUP_ATTRIBUTES = ("anatom_site", "age_band", "sex", "skin_tone")
AGE_BANDS = ((0, 30, "<30"), (30, 45, "30-44"), (45, 60, "45-59"), (60, 75, "60-74"))


def held_out_cross_validation(
    predictor: Predictor,
    dataset_dir: Path,
    split: str,
    data: SplitArrays,
    embeddings: np.ndarray,
    metadata: np.ndarray | None,
    batch_size: int,
) -> CrossValidation | None:
    """Lesion-grouped 5-fold cross-validation of a linear head on this network's features (and
    metadata, when it reads it) over every image it never trained on: validation + ``split``.

    Twice the images of the test split alone, so a tighter interval; but a refitted head, not
    the deployed one (docs/evaluation.md). None when ``split`` is not test or there are too
    few lesions.
    """
    from skinlesion.crossval import FOLDS, cross_validate

    if split != "test":
        return None
    val = read_split(dataset_dir, "val", mmap=False)
    val_metadata = None
    if metadata is not None:
        val_metadata = patient.encode_rows(val.image_ids, read_split_metadata(dataset_dir, "val"))
    _, val_embeddings = predictor.logits_with_embeddings(
        val.images, batch_size=batch_size, metadata=val_metadata
    )
    features = np.concatenate([val_embeddings, embeddings])
    if metadata is not None and val_metadata is not None:
        features = np.concatenate([features, np.concatenate([val_metadata, metadata])], axis=1)
    labels = np.concatenate([np.asarray(val.labels), np.asarray(data.labels)])
    lesions = [*val.lesion_ids, *data.lesion_ids]
    if len(set(lesions)) < FOLDS * 2:
        log.warning("Too few lesions (%d) for cross-validation: skipped", len(set(lesions)))
        return None
    result = cross_validate(features, labels, lesions, predictor.spec.classes)
    log.info(
        "Cross-validated on %d held-out images (%d lesions): balanced accuracy %.4f "
        "(95%% CI %.4f-%.4f, fold SD %.4f)",
        result.n_images,
        result.n_lesions,
        result.balanced_accuracy,
        *result.ci95,
        result.fold_sd,
    )
    return result


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (the float32 rows of a runtime agree to 1e-6)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def age_band(value: str) -> str:
    """The age band of a metadata ``age_approx`` cell ("unknown" when empty or unreadable)."""
    try:
        age = float(value)
    except ValueError:
        return "unknown"
    if not math.isfinite(age):
        return "unknown"
    for low, high, name in AGE_BANDS:
        if low <= age < high:
            return name
    return ">=75"


def _train_images(dataset_dir: Path) -> np.ndarray | None:
    from skinlesion.training.calibration import subsample

    try:
        train = read_split(dataset_dir, "train")
    except FileNotFoundError:
        return None
    rows = subsample(len(train), SKIN_TONE_TRAIN_SAMPLE)
    return np.asarray(train.images[rows])


def skin_tone_counts(images: np.ndarray | None) -> dict[str, int]:
    """Images per skin-tone band (ITA of the frame's outer ring), every band listed."""
    from skinlesion.clinical import SKIN_TONE_BANDS, ita_degrees, skin_tone_band

    counts = {name: 0 for name, _ in SKIN_TONE_BANDS} | {"unknown": 0}
    for image in images if images is not None else []:
        counts[skin_tone_band(ita_degrees(image))] += 1
    return counts


def per_class_sensitivity(
    labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str], *, resamples: int = 1000
) -> dict[str, dict[str, float | None]]:
    """Each class's sensitivity (recall) with a 95% bootstrap interval over its test images."""
    from skinlesion.metrics import bootstrap

    out = {}
    for index, name in enumerate(classes):
        hits = (predicted[labels == index] == index).astype(float)
        estimate = bootstrap(
            lambda rows, hits=hits: hits[rows].mean() if len(rows) else math.nan,
            len(hits),
            resamples=resamples,
            seed=index,
        )
        out[name] = estimate.to_dict()
    return out


def clinical_evaluation(
    spec: ModelSpec,
    labels: np.ndarray,
    probabilities: np.ndarray,
    uncalibrated: np.ndarray,
    ood_scores: np.ndarray,
    images: np.ndarray,
    *,
    metadata: dict[str, dict[str, str]] | None,
    image_ids: Sequence[str],
    train_images: np.ndarray | None,
    quality: QualityStats | None = None,
    resamples: int = 1000,
) -> dict[str, Any]:
    """Operating point with intervals, calibration before/after, subgroups, OOD false refusals.

    JSON-ready; ``flat_metrics`` holds the scalars that metrics.json (and the gate) read.
    """
    from skinlesion.clinical import (
        image_check,
        ita_degrees,
        malignancy_score,
        malignant_classes,
        refusal_reason,
        skin_tone_band,
    )

    classes = tuple(spec.classes)
    flat: dict[str, Any] = {"temperature": float(spec.temperature)}
    before = reliability_bins(labels, uncalibrated)
    after = reliability_bins(labels, probabilities)
    from skinlesion.metrics import _ece_from_bins

    flat["ece_uncalibrated"] = _ece_from_bins(before)
    out: dict[str, Any] = {
        "temperature": float(spec.temperature),
        "calibration": {
            "before": {"ece": flat["ece_uncalibrated"], "bins": _bins_dict(before)},
            "after": {"ece": _ece_from_bins(after), "bins": _bins_dict(after)},
        },
    }
    out["per_class_sensitivity"] = per_class_sensitivity(
        labels, probabilities.argmax(axis=1), classes, resamples=resamples
    )
    point = spec.operating_point
    malignant = (
        malignant_classes(classes, include_ak="AK" in point.get("malignant_classes", ()))
        if any(c in classes for c in ("MEL", "BCC", "SCC"))
        else ()
    )
    truth = np.isin(labels, [classes.index(c) for c in malignant])
    refer: np.ndarray | None = None
    if point:
        scores = malignancy_score(probabilities, classes, point["malignant_classes"])
        refer = scores >= float(point["threshold"])
        melanoma = classes.index("MEL") if "MEL" in classes else None
        estimates = operating_point_metrics(
            scores,
            truth,
            probabilities[:, melanoma] if melanoma is not None else None,
            labels == melanoma if melanoma is not None else None,
            float(point["threshold"]),
            resamples=resamples,
        )
        out["operating_point"] = {
            **point,
            "test": {name: estimate.to_dict() for name, estimate in estimates.items()},
        }
        flat["malignant_sensitivity_at_threshold"] = estimates["malignant_sensitivity"].value
        flat["malignant_specificity_at_threshold"] = estimates["malignant_specificity"].value
        flat["referred_share"] = estimates["referred_share"].value
        for name, estimate in estimates.items():
            if name.startswith("melanoma_"):
                flat[name] = estimate.value
    # Out-of-distribution refusals of real test images: every one is a false refusal.
    problems = [image_check(image, quality) for image in images]
    threshold = float(spec.ood["threshold"]) if spec.ood else None
    refused = np.array(
        [
            refusal_reason(p, float(s), threshold) is not None
            for p, s in zip(problems, ood_scores, strict=True)
        ]
    )
    out["ood"] = {
        **spec.ood,
        "test_refused": int(refused.sum()),
        "test_false_refusal_rate": float(refused.mean()) if len(refused) else None,
    }
    flat["ood_false_refusal_rate"] = out["ood"]["test_false_refusal_rate"]
    # Subgroups: metadata per image (when the dataset kept it) and the estimated skin tone.
    rows = [metadata.get(i, {}) for i in image_ids] if metadata else [{} for _ in image_ids]
    groups = {
        "anatom_site": [r.get("anatom_site") or "unknown" for r in rows],
        "age_band": [age_band(r.get("age_approx", "")) for r in rows],
        "sex": [r.get("sex") or "unknown" for r in rows],
        "skin_tone": [skin_tone_band(ita_degrees(image)) for image in images],
    }
    subgroups = {
        attribute: subgroup_metrics(values, labels, probabilities, refer, truth)
        for attribute, values in groups.items()
    }
    out["subgroups"] = subgroups
    out["metadata_available"] = metadata is not None
    judged = [
        (attribute, row)
        for attribute, table in subgroups.items()
        for row in table
        if row["judged"] and row["group"] != "unknown"
    ]
    worst: dict[str, Any] = {}
    for key in ("balanced_accuracy", "malignant_sensitivity"):
        candidates = [
            (row[key]["value"], attribute, row["group"])
            for attribute, row in judged
            if key in row and row[key]["value"] is not None
        ]
        if candidates:
            value, attribute, group = min(candidates)
            worst[key] = {"value": value, "attribute": attribute, "group": group}
            flat[f"worst_subgroup_{key}"] = value
    out["worst_subgroup"] = worst
    out["skin_tone"] = {
        "train": skin_tone_counts(train_images),
        "test": {name: groups["skin_tone"].count(name) for name in skin_tone_counts(None)},
        "train_sampled": 0 if train_images is None else len(train_images),
    }
    out["flat_metrics"] = {
        k: (v if v is None or (isinstance(v, float) and math.isfinite(v)) else None)
        for k, v in flat.items()
    }
    return out


def _bins_dict(bins: Any) -> dict[str, Any]:
    return {
        k: [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]
        for k, values in asdict(bins).items()
    }


def explain_mistakes(
    predictor: Predictor, examples: Sequence[MisclassifiedExample]
) -> list[ExplainedMistake]:
    """Grad-CAM heatmaps of the predicted class of each example, in one pass over them alone."""
    from skinlesion.evaluation_report import ExplainedMistake
    from skinlesion.serving.gradcam import GradCam

    if not examples:
        return []
    classes = list(predictor.spec.classes)
    gradcam = GradCam(predictor.model, predictor.spec.image_size)
    inputs = predictor.preprocess(np.stack([example.image for example in examples]))
    heatmaps = gradcam.heatmaps(
        inputs, [classes.index(example.predicted_label) for example in examples]
    )
    log.info("Grad-CAM of %d mistakes on layer %s", len(examples), gradcam.layer_name)
    return [
        ExplainedMistake(example=example, heatmap=heatmap, layer=gradcam.layer_name)
        for example, heatmap in zip(examples, heatmaps, strict=True)
    ]


def flat_metrics(result: EvaluationResult, reference: float, split: str) -> dict[str, Any]:
    """metrics.json: the result's scalars plus the reference score and the split size."""
    metrics: dict[str, Any] = dict(result.flat_metrics())
    metrics["balanced_accuracy_isic"] = float(reference)
    metrics[f"n_{split}"] = result.n_samples
    return metrics


def kfp_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numeric metrics, as KFP's ``Metrics.log_metric`` accepts them."""
    return {
        name: float(value)
        for name, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def kfp_classification(result: EvaluationResult, roc_class: str) -> dict[str, Any]:
    """Arguments for ``log_confusion_matrix(categories, matrix)`` and ``log_roc_curve``.

    ``roc`` holds ``fpr``, ``tpr`` and ``thresholds`` (``log_roc_curve``'s ``threshold``).
    """
    curve = result.roc_curves[roc_class]
    return {
        "confusion_matrix": {
            "categories": list(result.classes),
            "matrix": [list(row) for row in result.confusion_matrix],
        },
        "roc": {
            "class": roc_class,
            "fpr": list(curve.fpr),
            "tpr": list(curve.tpr),
            "thresholds": list(curve.thresholds),
        },
    }


def model_quality_statistics(result: EvaluationResult) -> dict[str, Any]:
    """The ``multiclass_classification_metrics`` block of SageMaker's model quality statistics."""
    n = result.n_samples
    weighted: dict[str, float] = {"recall": 0.0, "precision": 0.0, "f1": 0.0}
    for item in result.per_class:
        share = item.support / n
        recall = item.sensitivity if math.isfinite(item.sensitivity) else 0.0
        precision = item.precision if math.isfinite(item.precision) else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        weighted["recall"] += share * recall
        weighted["precision"] += share * precision
        weighted["f1"] += share * f1
    matrix = {
        true: {pred: int(count) for pred, count in zip(result.classes, row, strict=True)}
        for true, row in zip(result.classes, result.confusion_matrix, strict=True)
    }
    block: dict[str, Any] = {"confusion_matrix": matrix}
    for name, value in (
        ("accuracy", result.accuracy),
        ("balanced_accuracy", result.balanced_accuracy),
        ("weighted_recall", weighted["recall"]),
        ("weighted_precision", weighted["precision"]),
        ("weighted_f1", weighted["f1"]),
        ("macro_auc", result.macro_auc),
    ):
        if math.isfinite(value):
            block[name] = {"value": float(value)}
    return block


def write_predictions(
    path: Path,
    image_ids: Sequence[str],
    lesion_ids: Sequence[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
) -> Path:
    """One row per image: ids, true and predicted class codes, one probability column per class."""
    predicted = np.asarray(probabilities).argmax(axis=1)
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "lesion_id", "true_label", "predicted_label", *classes])
        for i, image_id in enumerate(image_ids):
            writer.writerow(
                [
                    image_id,
                    lesion_ids[i],
                    classes[int(labels[i])],
                    classes[int(predicted[i])],
                    *(f"{p:.6g}" for p in probabilities[i]),
                ]
            )
    return Path(path)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    # allow_nan=False: an undefined metric must already be None, never a non-JSON NaN.
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the processing container; a failure exits 1 and leaves its reason."""
    args = get_args_parser().parse_args(argv)
    configure_logging()
    return run_job(JobKind.PROCESSING, "Evaluation", lambda: _run_from_args(args))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``skinlesion evaluate`` (the same job, run in this process) to the CLI."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on a preprocessed dataset split; write metrics and an HTML report",
    )
    add_arguments(parser)
    parser.set_defaults(func=_evaluate_command)


def _run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return run(
        args.dataset,
        args.model,
        args.output,
        split=args.split,
        batch_size=args.batch_size,
        roc_class=args.roc_class,
        device=args.device,
        precision=args.precision,
    )


def _evaluate_command(args: argparse.Namespace) -> int:
    metrics = _run_from_args(args)
    log.info(
        "Balanced accuracy %.4f; report: %s",
        metrics["balanced_accuracy"],
        args.output / REPORT_FILE,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
