"""Fast image decoding to square uint8 RGB arrays, one image or many in parallel.

Geometry: the centre square of the image is cut out and resized to ``size x size``. Dermoscopy
photographs are taken with the lesion in the middle, so the crop loses only skin at the long
sides (1/8 of the width on each side of a 4:3 HAM10000 image) and keeps the lesion at the full
resolution that the frame allows; resize-with-pad would spend a quarter of the pixels on bars.
Training, evaluation, monitoring and serving all call :func:`prepare_image`, so the model sees
the same geometry everywhere.

Speed: for JPEGs, :meth:`PIL.Image.Image.draft` makes libjpeg decode at 1/2, 1/4 or 1/8 scale
straight away (the DCT is scaled; no full-size bitmap is made), as long as the result is still
at least ``size`` on each side.

Corrupt data: Pillow silences libjpeg's warnings, so a JPEG with garbage inside its compressed
data decodes "fine", with grey blocks from the damage on. :func:`jpeg_corruption` decodes such a
file once more with libjpeg-turbo's warnings made errors (simplejpeg, ``strict=True``), and
:func:`load_image` raises :class:`CorruptImageError` for it.
"""

from __future__ import annotations

import io
import logging
import mmap
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)
# Progress lines that a console summary such as `make demo` shows as they come.
progress_log = logging.getLogger("skinlesion.progress")

# What a broken or foreign file raises inside Pillow.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
CHECK_SIZE = 32  # decode size when only checking that an image decodes: every byte is read
_PARALLEL_MIN = 64  # below this many images a pool costs more than it saves
_LOG_PROGRESS_MIN = 1000  # fewer images: one summary line, no progress lines
_CORRUPTION_CHECK_SIZE = 16  # decode scale of the corruption check: every entropy byte is read


class CorruptImageError(OSError):
    """A JPEG that decodes, but whose compressed data libjpeg reported as corrupt."""


def is_corrupt_error(message: str) -> bool:
    """True for a decode error message (as :func:`load_images` records them) of a corrupt JPEG."""
    return message.startswith(f"{CorruptImageError.__name__}:")


def jpeg_corruption(data: bytes) -> str:
    """libjpeg's warning about a JPEG's compressed data ("Corrupt JPEG data: 36 extraneous bytes
    before marker 0xd9", "Premature end of JPEG file"), or "" when it has none.

    Only recoverable damage is reported: a file that the strict decode refuses but the lenient
    one accepts. What neither decodes is left to Pillow, which decoded it already.
    """
    import simplejpeg

    options = {
        "fastdct": True,
        "fastupsample": True,
        "min_height": _CORRUPTION_CHECK_SIZE,
        "min_width": _CORRUPTION_CHECK_SIZE,
    }
    try:
        simplejpeg.decode_jpeg(data, strict=True, **options)
    except ValueError as warning:
        try:
            simplejpeg.decode_jpeg(data, strict=False, **options)
        except ValueError as error:
            log.debug("simplejpeg cannot decode this JPEG at all (%s); Pillow did", error)
            return ""
        return str(warning)
    return ""


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB; transparency is flattened onto black (the dermatoscope's rim)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        peak = float(array.max()) or 1.0
        image = Image.fromarray((array * (255.0 / peak)).clip(0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (0, 0, 0))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def centre_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred square of a ``width x height`` image, as a crop box."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return (left, top, left + side, top + side)


def prepare_image(image: Image.Image, size: int) -> np.ndarray:
    """An opened image to (size, size, 3) uint8 RGB: EXIF orientation, centre crop, resize.

    Call ``image.draft("RGB", (size, size))`` first on a freshly opened JPEG to decode it at a
    reduced scale; :func:`load_image` and :func:`decode_image_bytes` do.
    """
    image = ImageOps.exif_transpose(image) or image
    image = _to_rgb(image)
    box = centre_box(*image.size)
    if image.size != (size, size):
        # Resize straight from the crop box: one resampling pass, antialiased (BILINEAR with
        # Pillow's support scaled to the reduction).
        image = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
    array = np.asarray(image, dtype=np.uint8)
    return np.ascontiguousarray(array)


def _open_drafted(image: Image.Image, size: int) -> Image.Image:
    if image.format == "JPEG":
        image.draft("RGB", (size, size))
    return image


def load_image(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode one image file; returns the (size, size, 3) array and the original (w, h).

    Raises CorruptImageError for a JPEG whose compressed data libjpeg reports as corrupt.
    """
    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        original = image.size
        array = prepare_image(_open_drafted(image, size), size)
        if image.format == "JPEG":
            warning = jpeg_corruption(data)
            if warning:
                raise CorruptImageError(warning)
    return array, original


def decode_image_bytes(data: bytes, size: int) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ...) given as bytes, e.g. a request body."""
    with Image.open(io.BytesIO(data)) as image:
        return prepare_image(_open_drafted(image, size), size)


def _load_task(task: tuple[int, str, int]) -> tuple[int, np.ndarray | None, tuple[int, int], str]:
    index, path, size = task
    try:
        array, original = load_image(Path(path), size)
    except DECODE_ERRORS as error:
        return index, None, (0, 0), f"{type(error).__name__}: {error}"
    if _SHARED_OUTPUT is not None:  # a forked worker: write in place, send back no pixels
        _SHARED_OUTPUT[index] = array
        return index, None, original, ""
    return index, array, original, ""


# Set in the parent just before a fork pool starts, so that its workers inherit the mapping.
_SHARED_OUTPUT: np.ndarray | None = None


def _shared_array(shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 array in anonymous shared memory (MAP_SHARED): forked workers write into it."""
    nbytes = int(np.prod(shape))
    buffer = mmap.mmap(-1, max(nbytes, 1))
    return np.frombuffer(buffer, dtype=np.uint8, count=nbytes).reshape(shape)


def resolve_workers(workers: int) -> int:
    """``0`` means one worker per CPU core."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0: one per core); got {workers}.")
    return workers or os.cpu_count() or 1


class _Progress:
    """A tqdm bar on a terminal; a log line every ~10% otherwise (e.g. in CloudWatch)."""

    def __init__(self, total: int, description: str, enabled: bool):
        self.total, self.description, self.done = total, description, 0
        self.next_log = max(1, total // 10)
        self.started = time.perf_counter()
        self.bar = None
        self.enabled = enabled and total > 0
        self.log_steps = total >= _LOG_PROGRESS_MIN
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit="img", leave=False)

    def update(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif (
            self.enabled
            and self.log_steps
            and (self.done >= self.next_log or self.done == self.total)
        ):
            self.next_log += max(1, self.total // 10)
            elapsed = time.perf_counter() - self.started
            eta = elapsed / self.done * (self.total - self.done)
            progress_log.info(
                "%s: %d/%d images (%d%%), %.0f images/s, ETA %.0f s",
                self.description,
                self.done,
                self.total,
                100 * self.done // self.total,
                self.done / elapsed if elapsed > 0 else 0.0,
                eta,
            )

    def close(self) -> float:
        if self.bar is not None:
            self.bar.close()
        return time.perf_counter() - self.started


def _run_tasks(
    tasks: list[tuple[int, str, int]],
    processes: int,
    progress: _Progress,
    shared: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray | None, tuple[int, int], str]]:
    """Decode ``tasks`` in ``processes`` (1: in this one); with ``shared`` (fork only), the
    workers write pixels straight into it.

    Sending each decoded image back through the pool's pipe costs the parent a pickle, a copy
    and the CPU time for both, on a machine whose every core is decoding: in place, the parent
    only receives indices.
    """
    global _SHARED_OUTPUT
    if processes == 1:
        for task in tasks:
            yield _load_task(task)
            progress.update()
        return
    chunksize = max(1, min(32, len(tasks) // (processes * 8)))
    _SHARED_OUTPUT = shared
    try:
        context = get_context("fork") if shared is not None else get_context()
        pool = context.Pool(processes)
    finally:
        _SHARED_OUTPUT = None  # the workers have their copy of the reference
    with pool:
        for result in pool.imap_unordered(_load_task, tasks, chunksize=chunksize):
            yield result
            progress.update()


@dataclass(frozen=True)
class LoadedImages:
    """Decoded images; rows whose index is in ``errors`` are zeros and must be dropped."""

    images: np.ndarray  # (N, S, S, 3) uint8
    original_sizes: np.ndarray  # (N, 2) int: width, height as stored; 0 for failures
    errors: dict[int, str]
    seconds: float

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the rows that decoded."""
        mask = np.ones(len(self.images), dtype=bool)
        mask[list(self.errors)] = False
        return mask


def load_images(
    paths: Sequence[Path],
    size: int,
    *,
    workers: int = 0,
    progress: bool = True,
    description: str = "decode",
) -> LoadedImages:
    """Decode and resize ``paths`` in parallel (``workers=0``: one process per core)."""
    shape = (len(paths), size, size, 3)
    processes = resolve_workers(workers)
    if len(paths) < _PARALLEL_MIN:
        processes = 1
    in_place = processes > 1 and "fork" in get_all_start_methods()
    images = _shared_array(shape) if in_place else np.zeros(shape, dtype=np.uint8)
    sizes = np.zeros((len(paths), 2), dtype=np.int64)
    errors: dict[int, str] = {}
    bar = _Progress(len(paths), description, progress)
    tasks = [(i, str(p), size) for i, p in enumerate(paths)]
    for index, array, original, error in _run_tasks(
        tasks, processes, bar, images if in_place else None
    ):
        if error:
            errors[index] = error
            continue
        if array is not None:  # None: a forked worker wrote it into ``images`` already
            images[index] = array
        sizes[index] = original
    seconds = bar.close()
    if paths:
        log.info(
            "Decoded %d images to %dx%d in %.1f s (%.0f images/s), %d failed",
            len(paths),
            size,
            size,
            seconds,
            len(paths) / max(seconds, 1e-9),
            len(errors),
        )
    return LoadedImages(images=images, original_sizes=sizes, errors=errors, seconds=seconds)


def check_images(
    paths: Sequence[Path], *, workers: int = 0, progress: bool = True
) -> dict[int, str]:
    """Decode every image completely (at a small scale, which still reads every byte) and
    return ``{index: error}`` for those that are unreadable, truncated or corrupt
    (:func:`is_corrupt_error` tells the last kind apart)."""
    return load_images(
        paths, CHECK_SIZE, workers=workers, progress=progress, description="check"
    ).errors
