"""The evaluation report: sections, embedded images, no external assets, escaping, and the
Grad-CAM of the most confident mistakes of a small real model."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from skinlesion.data.store import read_split
from skinlesion.evaluation_report import (
    gradcam_overlay,
    render_report,
    select_misclassified,
    write_report,
)
from skinlesion.labels import CLASS_NAMES, CLASSES
from skinlesion.metrics import evaluate_predictions

SECTIONS = (
    "headline-metrics",
    "per-class-metrics",
    "confusion-matrix",
    "roc-curves",
    "reliability-diagram",
    "misclassified",
    "gradcam",
    "model",
    "dataset",
)


class _Collector(HTMLParser):
    """Collects ids, image sources, every URL-bearing attribute and the open-tag balance."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.figures: list[dict[str, str | None]] = []  # the attributes of each <figure>
        self.images: list[str] = []
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(values["id"] or "")
        if tag == "figure":
            self.figures.append(values)
        if tag == "img":
            self.images.append(values.get("src") or "")
        for name in ("src", "href", "action", "data"):
            if values.get(name):
                self.urls.append(values[name] or "")
        if tag not in ("meta", "img", "br", "link", "input"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()


@pytest.fixture(scope="module")
def scored() -> dict:
    rng = np.random.default_rng(5)
    n = 160
    labels = rng.choice(8, size=n, p=[0.15, 0.5, 0.1, 0.05, 0.1, 0.03, 0.04, 0.03])
    logits = rng.normal(size=(n, 8))
    logits[np.arange(n), labels] += 2.0
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    images = rng.integers(0, 256, size=(n, 48, 40, 3), dtype=np.uint8)
    image_ids = [f"ISIC_{i:07d}" for i in range(n)]
    image_ids[int(np.flatnonzero(probabilities.argmax(1) != labels)[0])] = "<b>&evil'\""
    return {
        "labels": labels,
        "probabilities": probabilities,
        "images": images,
        "image_ids": image_ids,
        "result": evaluate_predictions(labels, probabilities, CLASSES),
    }


def test_select_misclassified_returns_the_most_confident_mistakes(scored: dict) -> None:
    examples = select_misclassified(
        scored["images"],
        scored["labels"],
        scored["probabilities"],
        scored["image_ids"],
        CLASSES,
        10,
    )
    wrong = scored["probabilities"].argmax(1) != scored["labels"]
    assert len(examples) == 10 < wrong.sum()
    confidences = [e.confidence for e in examples]
    assert confidences == sorted(confidences, reverse=True)
    assert confidences[0] == pytest.approx(scored["probabilities"].max(1)[wrong].max())
    for example in examples:
        assert example.true_label != example.predicted_label
        i = scored["image_ids"].index(example.image_id)
        assert CLASSES[scored["labels"][i]] == example.true_label
        np.testing.assert_array_equal(example.image, scored["images"][i])


def test_report_has_every_section_and_only_embedded_images(scored: dict, tmp_path: Path) -> None:
    examples = select_misclassified(
        scored["images"], scored["labels"], scored["probabilities"], scored["image_ids"], CLASSES
    )
    path = write_report(
        tmp_path / "report.html",
        scored["result"],
        reference_balanced_accuracy=scored["result"].balanced_accuracy,
        model_spec={"architecture": "efficientnet_lite0", "image_size": 96, "classes": CLASSES},
        manifest={"source": "sample", "splits": {"train": 700, "val": 150, "test": 160}},
        misclassified=examples,
        subtitle="efficientnet_lite0 on the test split",
    )
    text = path.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(text)
    parser.close()

    assert parser.open == [], f"unclosed tags: {parser.open}"
    for section in SECTIONS:
        assert section in parser.ids, f"missing section {section}"
    # Three plots and one thumbnail per mistake, all inline PNGs that decode.
    assert len(examples) == 24
    assert len(parser.images) == 3 + len(examples)
    for source in parser.images:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(source[len(prefix) :]))) as picture:
            assert picture.format == "PNG" and min(picture.size) > 10
    # Nothing to fetch: no scripts, stylesheets, fonts or remote URLs.
    assert all(url.startswith("data:") for url in parser.urls)
    assert "script" not in parser.tags and "link" not in parser.tags
    assert not re.search(r"https?://|@import|url\(", text)


def test_report_tables_hold_the_numbers(scored: dict) -> None:
    result = scored["result"]
    text = render_report(result, reference_balanced_accuracy=0.123456789)

    assert f"{result.balanced_accuracy:.4f}" in text
    assert "0.1235" in text  # the reference scorer's number, as given
    assert f"{result.macro_auc:.4f}" in text and f"{result.ece:.4f}" in text
    # Per-class rows in the label order, MEL first, each with its numbers.
    table = text[text.index('id="per-class-metrics"') : text.index('id="plots"')]
    positions = [table.index(f"<td>{name}</td>") for name in CLASSES]
    assert positions == sorted(positions)
    for item in result.per_class:
        row = table[table.index(f"<td>{item.name}</td>") :].split("</tr>")[0]
        assert CLASS_NAMES[item.name] in row
        assert f'<td class="num">{item.support}</td>' in row
        assert f"{item.sensitivity:.4f}" in row and f"{item.auc:.4f}" in row
    assert "No model specification was given." in text


def test_report_escapes_text(scored: dict) -> None:
    examples = select_misclassified(
        scored["images"],
        scored["labels"],
        scored["probabilities"],
        scored["image_ids"],
        CLASSES,
        200,
    )
    assert any(e.image_id.startswith("<b>") for e in examples)
    text = render_report(
        scored["result"],
        misclassified=examples,
        manifest={"source": "<script>alert(1)</script>"},
        title="A & B <test>",
    )
    assert "<b>&evil" not in text and "&lt;b&gt;&amp;evil" in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "<title>A &amp; B &lt;test&gt;</title>" in text


def test_undefined_values_render_as_dashes() -> None:
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    result = evaluate_predictions(labels, probabilities, ("MEL", "NV", "BCC"))
    text = render_report(result)
    row = text[text.index("<td>BCC</td>") :].split("</tr>")[0]
    assert row.count("&mdash;") == 3  # sensitivity, precision and AUC are undefined
    perfect = evaluate_predictions(labels, np.eye(3)[labels], ("MEL", "NV", "BCC"))
    assert "No misclassified images to show." in render_report(perfect)


def test_gradcam_overlay_colours_the_evidence_over_the_image_the_model_saw() -> None:
    image = np.full((40, 30, 3), 128, dtype=np.uint8)
    heatmap = np.zeros((64, 64), dtype=np.float32)
    heatmap[:, 32:] = 1.0  # all the evidence on the right half

    overlay = gradcam_overlay(image, heatmap)

    assert overlay.shape == (64, 64, 3) and overlay.dtype == np.uint8  # the heatmap's size
    left, right = overlay[:, :32].astype(int), overlay[:, 32:].astype(int)
    # jet: no evidence is blue, the most is red; grey underneath shows through both.
    assert (left[..., 2] > left[..., 0]).all() and (right[..., 0] > right[..., 2]).all()
    assert overlay.min() > 0 and overlay.max() < 255
    with pytest.raises(ValueError, match=r"heatmap of shape \(S, S\)"):
        gradcam_overlay(image, np.zeros((2, 64, 64)))


def test_report_explains_a_real_models_most_confident_mistakes_with_gradcam(
    preprocessed_dataset: Path, fitted_model_dir: Path
) -> None:
    from skinlesion.jobs.evaluate import GRADCAM_EXAMPLES, explain_mistakes
    from skinlesion.models import Predictor

    predictor = Predictor.load(fitted_model_dir, precision="fp32")
    classes = tuple(predictor.spec.classes)
    test = read_split(preprocessed_dataset, "test", mmap=False)
    probabilities = predictor.predict_proba(test.images)
    mistakes = select_misclassified(
        test.images, test.labels, probabilities, test.image_ids, classes
    )
    # The fitted model makes only a few mistakes on the sample's test split: explain them all.
    count = min(GRADCAM_EXAMPLES, len(mistakes))
    assert count >= 2

    explained = explain_mistakes(predictor, mistakes[:count])

    assert [item.example for item in explained] == mistakes[:count]
    size = predictor.spec.image_size
    # An independent check that each map is the predicted class's: every LesionClassifier ends
    # in feature map -> global average pooling -> linear head, where Grad-CAM is CAM
    # (relu of the head's weights of that class times the feature map; tests/serving proves it).
    inputs = predictor.preprocess(np.stack([item.example.image for item in explained]))
    predicted = [classes.index(item.example.predicted_label) for item in explained]
    with torch.no_grad():
        features = predictor.model.trunk(inputs.float())
        cam = torch.relu(
            torch.einsum("nkhw,nk->nhw", features, predictor.model.head.weight[predicted])
        )
        cam = F.interpolate(cam[:, None], size=(size, size), mode="bilinear", align_corners=False)
        cam = cam[:, 0] / cam.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    np.testing.assert_allclose(
        np.stack([item.heatmap for item in explained]), cam.numpy(), atol=1e-4
    )
    assert {item.layer for item in explained} == {"trunk.net._swish"}

    result = evaluate_predictions(test.labels, probabilities, classes)
    text = render_report(result, misclassified=mistakes, explained=explained)
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert parser.open == [] and "gradcam" in parser.ids
    section = text[text.index('<section id="gradcam">') : text.index('<section id="model">')]
    assert section.count('<figure class="gradcam">') == count
    assert section.count("<img ") == 2 * count  # each image and its overlay
    for item in explained:
        example = item.example
        assert f"Grad-CAM of {example.predicted_label} on {example.image_id}" in section
        caption = section[section.index(f"{example.image_id}<br>") :].split("</figcaption>")[0]
        assert f"true <b>{example.true_label}</b>" in caption
        assert f'predicted <b class="bad">{example.predicted_label}</b>' in caption
        assert f"({example.confidence:.0%})" in caption
    # Three plots, one thumbnail per mistake, and two pictures per explained mistake.
    assert len(parser.images) == 3 + len(mistakes) + 2 * count
    assert "No misclassified images to explain." in render_report(result)


def test_gradcam_section_shows_the_n_mistakes_it_is_given_and_escapes_them(scored: dict) -> None:
    from skinlesion.evaluation_report import ExplainedMistake
    from skinlesion.jobs.evaluate import GRADCAM_EXAMPLES

    mistakes = select_misclassified(
        scored["images"],
        scored["labels"],
        scored["probabilities"],
        scored["image_ids"],
        CLASSES,
        200,
    )
    assert len(mistakes) > GRADCAM_EXAMPLES
    rng = np.random.default_rng(0)
    hostile = next(m for m in mistakes if m.image_id.startswith("<b>"))
    others = [m for m in mistakes if m is not hostile]
    chosen = [*others[: GRADCAM_EXAMPLES - 1], hostile]
    explained = [
        ExplainedMistake(example, rng.random((64, 64)).astype(np.float32), "layer<1>")
        for example in chosen
    ]

    text = render_report(scored["result"], explained=explained)

    section = text[text.index('<section id="gradcam">') : text.index('<section id="model">')]
    assert section.count('<figure class="gradcam">') == GRADCAM_EXAMPLES
    assert f"{others[GRADCAM_EXAMPLES - 1].image_id}<br>" not in section  # only the N given
    assert "<b>&evil" not in section and "&lt;b&gt;&amp;evil" in section
    assert "<code>layer&lt;1&gt;</code>" in section
