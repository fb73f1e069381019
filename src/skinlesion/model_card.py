"""The model card of a model version, as Markdown and HTML, written by the evaluate job.

Sections after Mitchell et al. 2019 (Model Cards for Model Reporting): intended use, uses it is
not for, training data (with its skin-tone and site make-up), metrics with intervals, the
operating point, the subgroup table, and known limitations, generated from what the evaluation
measured, so that a limitation the numbers show is written down.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from skinlesion import html_report

log = logging.getLogger(__name__)

MODEL_CARD_MARKDOWN = "model_card.md"
MODEL_CARD_HTML = "model_card.html"

INTENDED_USE = (
    "Decision support for clinicians triaging dermoscopic images of single skin lesions: a "
    "class probability per ISIC 2019 diagnosis and a referral suggestion (refer when the summed "
    "probability of malignant classes reaches the stored threshold). A clinician makes the "
    "decision; the model's answer is one input to it."
)
NOT_INTENDED_USE = (
    "- Diagnosis without a clinician, or as the sole reason not to refer.",
    "- Clinical (non-dermoscopic) photographs, whole-body images, mucosa, nails, or images "
    "that are not of skin; the endpoint refuses inputs unlike its training data, but that check "
    "is a safeguard, not a guarantee.",
    "- Populations and skin tones that the training data does not cover (see below).",
    "- Children, unless the evaluation below covers them.",
)


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _interval(estimate: Mapping[str, Any] | None) -> str:
    if not estimate or estimate.get("value") is None:
        return "n/a"
    return (
        f"{_number(estimate['value'])} "
        f"(95% CI {_number(estimate.get('low'))}-{_number(estimate.get('high'))})"
    )


def limitations(clinical: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[str]:
    """Known limitations, read from the evaluation's numbers and the dataset's manifest."""
    notes: list[str] = []
    train_tones = clinical.get("skin_tone", {}).get("train", {})
    total = sum(train_tones.values()) or 1
    sparse = [band for band, n in train_tones.items() if band != "unknown" and n / total < 0.02]
    if sparse:
        notes.append(
            "Skin tones with under 2% of the training images (ITA estimate): "
            + ", ".join(sparse)
            + ". Performance on them is untested or unreliable."
        )
    for attribute, rows in clinical.get("subgroups", {}).items():
        small = [r["group"] for r in rows if not r["judged"]]
        if small:
            notes.append(
                f"Too few test images (< 30) to judge {attribute.replace('_', ' ')}: "
                + ", ".join(small)
                + "."
            )
    if not clinical.get("metadata_available"):
        notes.append("The dataset kept no age, sex or site metadata: those subgroups are unknown.")
    if manifest.get("source", {}).get("generated"):
        notes.append("Trained on GENERATED images: it means nothing on real lesions.")
    if not clinical.get("operating_point"):
        notes.append("No referral threshold was fitted: the endpoint gives no referral decision.")
    notes.append(
        "Skin tone is estimated from the image (ITA of the frame's outer ring), not reported by "
        "patients; lighting and dermatoscope colour shift it."
    )
    return notes


def _estimate_lines(metrics: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    """The cross-validated estimate and, for a metadata model, the image-only figure."""
    lines = []
    if metrics.get("cv_balanced_accuracy") is not None:
        lines.append(
            f"- Cross-validated balanced accuracy (held-out images, head refitted): "
            f"{_number(metrics['cv_balanced_accuracy'])} "
            f"[{_number(metrics.get('cv_balanced_accuracy_low'))}, "
            f"{_number(metrics.get('cv_balanced_accuracy_high'))}]"
        )
    if spec.get("metadata"):
        lines.append(
            "- Inputs: the image and, optionally, the patient's age, sex and anatomic site; "
            "without them (image only): balanced accuracy "
            f"{_number(metrics.get('balanced_accuracy_image_only'))}"
        )
    return lines


def render_markdown(
    spec: Mapping[str, Any],
    metrics: Mapping[str, Any],
    clinical: Mapping[str, Any],
    manifest: Mapping[str, Any],
    split: str,
) -> str:
    """The card as Markdown."""
    name = f"{spec.get('architecture', '?')} {spec.get('version', '')}".strip()
    lines = [f"# Model card: {name}", "", "## Intended use", "", INTENDED_USE, ""]
    lines += ["## Not intended for", "", *NOT_INTENDED_USE, ""]
    splits = manifest.get("splits", {})
    train = splits.get("train", {})
    lines += [
        "## Training data",
        "",
        f"- Source: {manifest.get('source', {}).get('uri', 'unknown')}",
        f"- Training images: {train.get('count', 'unknown')}; classes: "
        + ", ".join(f"{c} {n}" for c, n in train.get("class_counts", {}).items()),
        "",
        "Skin tone of the training images (ITA estimate, "
        f"{clinical.get('skin_tone', {}).get('train_sampled', 0)} images):",
        "",
        "| band | training images | test images |",
        "| --- | ---: | ---: |",
    ]
    tones = clinical.get("skin_tone", {})
    for band, count in tones.get("train", {}).items():
        lines.append(f"| {band} | {count} | {tones.get('test', {}).get(band, 0)} |")
    sites = clinical.get("subgroups", {}).get("anatom_site", [])
    if sites:
        lines += [
            "",
            "Anatomic sites of the test images: "
            + ", ".join(f"{r['group']} {r['n']}" for r in sites),
        ]
    lines += [
        "",
        f"## Metrics (on the {split} split, {metrics.get(f'n_{split}', '?')} images)",
        "",
        f"- Balanced accuracy: {_number(metrics.get('balanced_accuracy'))}",
        *_estimate_lines(metrics, spec),
        f"- Macro AUC: {_number(metrics.get('macro_auc'))}",
        f"- ECE after calibration: {_number(metrics.get('ece'))} "
        f"(before: {_number(metrics.get('ece_uncalibrated'))}; temperature "
        f"{_number(clinical.get('temperature'))})",
        f"- Out-of-distribution false refusals of test images: "
        f"{_number(metrics.get('ood_false_refusal_rate'))}",
        "",
        "## Operating point",
        "",
    ]
    point = clinical.get("operating_point")
    if point:
        test = point.get("test", {})
        lines += [
            f"Refer when {' + '.join(point['malignant_classes'])} probability >= "
            f"{_number(point['threshold'], 4)} (chosen on validation for {point['target']} "
            f"{_number(point['target_value'], 2)}).",
            "",
            f"- Malignant sensitivity: {_interval(test.get('malignant_sensitivity'))}",
            f"- Specificity: {_interval(test.get('malignant_specificity'))}",
            f"- Share referred: {_interval(test.get('referred_share'))}",
            "- Melanoma sensitivity at 80% specificity: "
            + _interval(test.get("melanoma_sensitivity_at_80_specificity")),
            "- Melanoma sensitivity at 90% specificity: "
            + _interval(test.get("melanoma_sensitivity_at_90_specificity")),
        ]
    else:
        lines.append("None fitted.")
    lines += [
        "",
        "## Subgroups",
        "",
        "| attribute | group | n | malignant | balanced accuracy | malignant sensitivity | judged |",
        "| --- | --- | ---: | ---: | --- | --- | --- |",
    ]
    for attribute, rows in clinical.get("subgroups", {}).items():
        for row in rows:
            lines.append(
                f"| {attribute} | {row['group']} | {row['n']} | {row['n_malignant']} | "
                f"{_interval(row['balanced_accuracy'])} | "
                f"{_interval(row.get('malignant_sensitivity'))} | "
                f"{'yes' if row['judged'] else 'too few (< 30)'} |"
            )
    worst = clinical.get("worst_subgroup", {})
    for key, item in worst.items():
        lines.append(
            f"\nWorst judged subgroup by {key.replace('_', ' ')}: {item['attribute']} = "
            f"{item['group']} ({_number(item['value'])})."
        )
    lines += ["", "## Known limitations", ""]
    lines += [f"- {note}" for note in limitations(clinical, manifest)]
    return "\n".join(lines) + "\n"


def write_model_card(
    output_dir: Path,
    spec: Mapping[str, Any],
    metrics: Mapping[str, Any],
    clinical: Mapping[str, Any],
    manifest: Mapping[str, Any],
    split: str,
) -> tuple[Path, Path]:
    """Write model_card.md and model_card.html (the Markdown in a page) to ``output_dir``."""
    markdown = render_markdown(spec, metrics, clinical, manifest, split)
    output_dir = Path(output_dir)
    md_path = output_dir / MODEL_CARD_MARKDOWN
    md_path.write_text(markdown, encoding="utf-8")
    html_path = output_dir / MODEL_CARD_HTML
    body = f'<pre style="white-space: pre-wrap">{html_report.escape(markdown)}</pre>'
    html_path.write_text(
        html_report.page("Model card", html_report.escape(str(spec.get("version", ""))), body),
        encoding="utf-8",
    )
    log.info("Wrote the model card to %s and %s", md_path, html_path)
    return md_path, html_path
