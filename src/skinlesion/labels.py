"""The ISIC 2019 diagnosis classes, in the column order of the challenge's ground-truth CSV."""

from __future__ import annotations

# Order matters: it is the column order of the ISIC 2019 ground truth and the output order of
# every model this project trains.
CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
UNKNOWN = "UNK"
CLASS_NAMES: dict[str, str] = {
    "MEL": "melanoma",
    "NV": "melanocytic nevus",
    "BCC": "basal cell carcinoma",
    "AK": "actinic keratosis",
    "BKL": "benign keratosis",
    "DF": "dermatofibroma",
    "VASC": "vascular lesion",
    "SCC": "squamous cell carcinoma",
}
NUM_CLASSES = len(CLASSES)


def class_index(name: str) -> int:
    """Return the index of a diagnosis code, e.g. ``class_index("MEL") == 0``."""
    try:
        return CLASSES.index(name)
    except ValueError:
        raise ValueError(f"Unknown class {name!r}. Accepted: {', '.join(CLASSES)}") from None
