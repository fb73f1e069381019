"""Reading and validating ISIC-format folders, on a generated sample damaged on purpose."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.data.csvfiles import read_rows, write_rows

from skinlesion.data.isic import DataValidationError, resolve_source, validate_dataset
from skinlesion.labels import CLASSES

N_ROWS = 80  # tiny_sample: 8 classes x 10


def _one_hot(label: str | None, unknown: bool = False) -> list[str]:
    return [("1.0" if c == label else "0.0") for c in CLASSES] + ["1.0" if unknown else "0.0"]


def test_clean_sample_passes_with_lesions_from_metadata(tiny_sample: Path) -> None:
    result = validate_dataset(tiny_sample, workers=1)
    report = result.report
    assert report.passed
    assert (report.total_rows, report.valid_rows, report.excluded_rows) == (N_ROWS, N_ROWS, 0)
    assert report.problems == {}
    assert report.class_counts == dict.fromkeys(CLASSES, 10)
    _, meta = read_rows(tiny_sample / "metadata.csv")
    lesion_of = {row[0]: row[1] for row in meta}
    assert all(r.lesion_id == lesion_of[r.image] for r in result.records)
    assert len({r.lesion_id for r in result.records}) < N_ROWS  # lesions repeat


def test_every_bad_row_is_excluded_and_listed(sample_copy: Path) -> None:
    labels = sample_copy / "labels.csv"
    header, rows = read_rows(labels)
    ids = [row[0] for row in rows]
    (sample_copy / "images" / f"{ids[0]}.jpg").unlink()  # missing image
    image = sample_copy / "images" / f"{ids[1]}.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])  # truncated JPEG
    rows[2][1:] = _one_hot(None)  # no label
    rows[3][1:] = _one_hot("MEL")
    rows[3][2] = "1.0"  # MEL and NV
    rows[4][1:] = _one_hot(None, unknown=True)  # UNK
    rows[5][1] = "0.5"  # not one-hot
    rows.append(list(rows[6]))  # an exact duplicate: the later copy goes
    conflicting = list(rows[7])
    conflicting[1:] = _one_hot("VASC" if rows[7][CLASSES.index("VASC") + 1] != "1.0" else "MEL")
    rows.append(conflicting)  # a duplicate that disagrees: both copies go
    write_rows(labels, header, rows)

    result = validate_dataset(sample_copy, max_invalid_fraction=0.2, workers=1)
    report = result.report
    expected = {
        "missing_image": [ids[0]],
        "unreadable_image": [ids[1]],
        "no_label": [ids[2]],
        "several_labels": [ids[3]],
        "unknown_label": [ids[4]],
        "invalid_label_value": [ids[5]],
        "duplicate_id": sorted([ids[6], ids[7], ids[7]]),
    }
    found = {name: sorted(p.examples) for name, p in report.problems.items()}
    assert found == expected
    assert report.total_rows == N_ROWS + 2
    assert report.excluded_rows == 9 == report.total_rows - report.valid_rows
    # Nothing silently dropped: the report lists every excluded row with its problem.
    listed = sorted((e["image"], e["problem"]) for e in report.excluded)
    assert listed == sorted((i, name) for name, items in expected.items() for i in items)
    kept = {r.image for r in result.records}
    assert ids[6] in kept  # an exact duplicate keeps its first copy
    assert kept.isdisjoint([*ids[:6], ids[7]])  # conflicting copies all go
    assert len(kept) == N_ROWS - 7 == report.valid_rows
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["problems"]["duplicate_id"]["count"] == 3
    assert payload["problems"]["missing_image"]["excludes_row"] is True
    assert payload["passed"] is True


def test_unknown_columns_are_reported_but_rows_kept(sample_copy: Path) -> None:
    labels = sample_copy / "labels.csv"
    header, rows = read_rows(labels)
    write_rows(labels, [*header, "score"], [[*row, "0.3"] for row in rows])
    report = validate_dataset(sample_copy, decode=False).report
    assert report.unknown_columns == ["score"]
    assert report.problems["unknown_column"].examples == ["score"]
    assert report.valid_rows == N_ROWS and report.excluded_rows == 0


def test_csv_without_unk_column_and_lesion_id_in_labels(sample_copy: Path) -> None:
    labels = sample_copy / "labels.csv"
    header, rows = read_rows(labels)
    assert header[-1] == "UNK"
    # The holdout.csv form: image,lesion_id,classes... with no UNK; no metadata file.
    write_rows(
        labels,
        [header[0], "lesion_id", *header[1:-1]],
        [[r[0], f"L{r[0]}", *r[1:-1]] for r in rows],
    )
    (sample_copy / "metadata.csv").unlink()
    result = validate_dataset(sample_copy, decode=False)
    assert result.report.valid_rows == N_ROWS and not result.report.problems
    assert all(r.lesion_id == f"L{r.image}" for r in result.records)


def test_image_without_lesion_id_is_its_own_lesion_and_noted(sample_copy: Path) -> None:
    header, meta = read_rows(sample_copy / "metadata.csv")
    meta[0][1] = ""  # as for the non-HAM10000 images of ISIC 2019
    write_rows(sample_copy / "metadata.csv", header, meta[:-1])  # and one image not listed
    report = validate_dataset(sample_copy, decode=False).report
    assert report.problems["missing_lesion_id"].count == 2
    assert report.valid_rows == N_ROWS and report.excluded_rows == 0


def test_without_metadata_each_image_is_its_own_lesion(sample_copy: Path) -> None:
    (sample_copy / "metadata.csv").unlink()
    result = validate_dataset(sample_copy, decode=False)
    assert result.source.metadata_csv is None
    assert all(r.lesion_id == r.image for r in result.records)


def test_missing_class_column_is_a_schema_error(sample_copy: Path) -> None:
    labels = sample_copy / "labels.csv"
    header, rows = read_rows(labels)
    drop = header.index("DF")
    write_rows(labels, header[:drop] + header[drop + 1 :], [r[:drop] + r[drop + 1 :] for r in rows])
    with pytest.raises(DataValidationError, match=r"lacks the column\(s\) DF.*image,MEL,NV"):
        validate_dataset(sample_copy, decode=False)


def test_threshold_exceeded_raises_with_counts_threshold_and_ids(sample_copy: Path) -> None:
    _header, rows = read_rows(sample_copy / "labels.csv")
    removed = [row[0] for row in rows[:5]]
    for image_id in removed:
        (sample_copy / "images" / f"{image_id}.jpg").unlink()
    with pytest.raises(DataValidationError) as caught:
        validate_dataset(sample_copy, max_invalid_fraction=0.05, decode=False)
    message = str(caught.value)
    assert "5 of 80 rows" in message and "max_invalid_fraction=0.05" in message
    assert all(image_id in message for image_id in removed)
    # The same data passes a looser threshold, and the report says what was dropped.
    report = validate_dataset(sample_copy, max_invalid_fraction=0.1, decode=False).report
    assert report.passed and report.problems["missing_image"].count == 5
    # Without raising, the report carries the verdict.
    strict = validate_dataset(
        sample_copy, max_invalid_fraction=0.0, decode=False, raise_on_failure=False
    )
    assert not strict.report.passed


def test_no_usable_rows_is_an_error_even_at_threshold_one(sample_copy: Path) -> None:
    header, _rows = read_rows(sample_copy / "labels.csv")
    write_rows(sample_copy / "labels.csv", header, [])
    with pytest.raises(DataValidationError, match="No usable rows"):
        validate_dataset(sample_copy, max_invalid_fraction=1.0)


def test_labels_subset_resolves_images_and_metadata_from_the_data_folder(sample_copy: Path) -> None:
    header, rows = read_rows(sample_copy / "labels.csv")
    (sample_copy / "subsets").mkdir()
    write_rows(sample_copy / "subsets" / "few.csv", header, rows[:12])
    result = validate_dataset(sample_copy, "subsets/few.csv", workers=1)
    assert result.report.valid_rows == 12 and not result.report.problems
    assert result.source.metadata_csv == sample_copy / "metadata.csv"
    assert all(r.path.parent == sample_copy / "images" for r in result.records)
    with pytest.raises(FileNotFoundError, match="relative to the data folder"):
        resolve_source(sample_copy, "subsets/absent.csv")


def test_images_next_to_the_csv_and_a_csv_path(sample_copy: Path) -> None:
    for image in (sample_copy / "images").iterdir():
        shutil.move(image, sample_copy / image.name)
    (sample_copy / "images").rmdir()
    by_folder = validate_dataset(sample_copy, decode=False)
    by_file = validate_dataset(sample_copy / "labels.csv", decode=False)
    assert by_folder.report.valid_rows == by_file.report.valid_rows == N_ROWS
    assert by_folder.source.images_dir == sample_copy


def test_isic_challenge_file_names_are_found(sample_copy: Path) -> None:
    (sample_copy / "labels.csv").rename(sample_copy / "ISIC_2019_Training_GroundTruth.csv")
    (sample_copy / "metadata.csv").rename(sample_copy / "ISIC_2019_Training_Metadata.csv")
    source = resolve_source(sample_copy)
    assert source.labels_csv.name == "ISIC_2019_Training_GroundTruth.csv"
    assert (
        source.metadata_csv is not None
        and source.metadata_csv.name == "ISIC_2019_Training_Metadata.csv"
    )


def test_missing_folder_and_missing_labels_name_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_source(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"labels.csv, ISIC_2019_Training_GroundTruth.csv"):
        resolve_source(tmp_path)
