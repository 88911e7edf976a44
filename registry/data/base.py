"""Image datasets for GAN training: ``ImageDataset`` and the built-in loaders.

Every loader returns an :class:`ImageDataset` holding uint8 ``(N, C, H, W)``
images on the CPU. Keeping the stored copy as uint8 costs a quarter of the
memory of float32; :func:`to_training_tensor` converts to ``[-1, 1]`` floats
only when the data goes to the training device.

Problems with user-supplied data raise :class:`DatasetError`, whose message is
a single line naming the file or folder, what is wrong and what to do, so a
command-line front end can print it as is instead of a traceback.

Why one module of some 460 lines: the three file-reading loaders (digits, IDX, image folders)
share the size checks, the bounded readers and the error wording that make hostile files fail
in one line; ``shapes`` lives apart because it reads nothing.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.resources
import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image, ImageOps

from registry.errors import DatasetError

__all__ = [
    "DatasetError",
    "ImageDataset",
    "check_image_size",
    "find_idx_images",
    "find_images",
    "load_digits",
    "load_image",
    "load_image_folder",
    "load_mnist_idx",
    "read_idx",
    "resize_uint8",
    "to_training_tensor",
    "uint8_to_float",
]


@dataclass(frozen=True)
class GroundTruth:
    """The generative factors behind a dataset's images, for disentanglement metrics
    (``registry.eval``): any dataset that can draw factor combinations and render them
    declares one, and the metrics ask it for fresh ground truth instead of knowing the
    dataset by name.

    ``sample(n, generator)`` returns ``(n, len(sizes))`` int64 factor indices on the CPU,
    drawn from ``generator`` only; ``render(factors)`` turns such indices (on any device)
    into the dataset's uint8 ``(n, C, H, W)`` images on that device.
    """

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    sample: Callable[[int, torch.Generator], torch.Tensor]
    render: Callable[[torch.Tensor], torch.Tensor]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.sizes) or not self.sizes or min(self.sizes) < 1:
            raise ValueError(f"GroundTruth: need one positive size per factor name, got {self.names} and {self.sizes}")


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """An in-memory image dataset.

    ``eq=False`` keeps identity comparison and hashing: the generated field-wise
    ``__eq__`` would compare tensors, which has no single truth value.
    """

    images: torch.Tensor  # (N, C, H, W) uint8, CPU
    labels: torch.Tensor | None  # (N,) int64 or None
    name: str
    factors: dict[str, torch.Tensor] | None = None  # optional ground-truth factors, each (N,)
    ground_truth: GroundTruth | None = None  # optional: draws and renders fresh factors (metrics)
    # Optional: draw(n, generator, device) -> uint8 (n, C, H, W) on ``device``, a pure function of
    # the generator's state. When set, training draws every batch fresh from it (a procedural
    # dataset's whole grid) instead of sampling ``images``, which then serve evaluation.
    draw: Callable[[int, torch.Generator, torch.device], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        # Catch malformed datasets (for example from a dataset plugin) here,
        # where the cause is obvious, rather than deep inside a training step.
        x = self.images
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.dtype != torch.uint8:
            raise ValueError(f"dataset {self.name!r}: images must be a uint8 (N, C, H, W) tensor")
        if x.shape[2] != x.shape[3]:
            raise ValueError(f"dataset {self.name!r}: images must be square, got {x.shape[2]}x{x.shape[3]}")
        n = x.shape[0]
        if self.labels is not None and tuple(self.labels.shape) != (n,):
            raise ValueError(
                f"dataset {self.name!r}: labels shape {tuple(self.labels.shape)} does not match {n} images"
            )
        for key, factor in (self.factors or {}).items():
            if tuple(factor.shape) != (n,):
                raise ValueError(
                    f"dataset {self.name!r}: factor {key!r} shape {tuple(factor.shape)} does not match {n} images"
                )

    @property
    def channels(self) -> int:
        """Number of colour channels (1 for grayscale, 3 for RGB)."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """Side length in pixels; datasets are square."""
        return int(self.images.shape[2])

    def __len__(self) -> int:
        return int(self.images.shape[0])


# ---------------------------------------------------------------------------
# Built-in digits
# ---------------------------------------------------------------------------

_DIGITS_FOLDER = "_data"
_DIGITS_FILE = "mnist-train-10k.npz"


def check_image_size(image_size: int | None) -> None:
    """Refuse an ``image_size`` that is neither None (the source's own size) nor a positive int."""
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")


def resize_uint8(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to a square side, bilinear with antialiasing.

    Antialiasing matters when shrinking: without it thin digit strokes alias
    into broken lines.
    """
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    resized = F.interpolate(
        images.float(),
        size=(image_size, image_size),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def load_digits(*, data_dir: str | os.PathLike[str] | None = None, image_size: int | None = None) -> ImageDataset:
    """The bundled 10,000-image MNIST training subset as an ``ImageDataset``.

    ``images`` are uint8 ``(10000, 1, 28, 28)``, or ``(10000, 1, S, S)`` resized (bilinear,
    antialiased) with ``image_size=S``; ``labels`` are the digits, int64 ``(10000,)``.
    ``registry.to_training_tensor(dataset, device)`` gives the float32 images in [-1, 1] that
    G and D see. ``data_dir`` is accepted so all loaders share one call signature, and
    ignored. The file is read through ``importlib.resources`` so it is found
    inside an installed wheel as well as in a source checkout.
    """
    del data_dir  # Same signature as the other loaders; the data ships with the package.
    check_image_size(image_size)
    resource = importlib.resources.files("registry.data") / _DIGITS_FOLDER / _DIGITS_FILE
    with resource.open("rb") as fh, np.load(fh) as npz:
        # NpzFile reads members lazily, so both arrays must be read inside the block.
        images_np = npz["images"]
        labels_np = npz["labels"]
    images = rearrange(torch.from_numpy(images_np), "n h w -> n 1 h w")
    if image_size is not None:
        images = resize_uint8(images, image_size)
    labels = torch.from_numpy(labels_np).to(torch.int64)
    return ImageDataset(images=images.contiguous(), labels=labels, name="digits")


# ---------------------------------------------------------------------------
# IDX files (the original MNIST distribution format)
# ---------------------------------------------------------------------------

_IDX_IMAGE_NAMES = (
    "train-images-idx3-ubyte",
    "train-images-idx3-ubyte.gz",
    "train-images.idx3-ubyte",  # torchvision's spelling
    "train-images.idx3-ubyte.gz",
)
_IDX_LABEL_NAMES = (
    "train-labels-idx1-ubyte",
    "train-labels-idx1-ubyte.gz",
    "train-labels.idx1-ubyte",
    "train-labels.idx1-ubyte.gz",
)
_IDX_DTYPE_NAMES = {0x08: "ubyte", 0x09: "byte", 0x0B: "short", 0x0C: "int", 0x0D: "float", 0x0E: "double"}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def _read_at_most(fh: BinaryIO, limit: int) -> bytearray:
    """Read up to ``limit`` bytes in chunks.

    Returns a bytearray so numpy views of it are writable and torch can wrap
    them without a copy.

    Chunking matters for a hostile or corrupt header: a single ``read(limit)``
    would try to allocate the whole declared size up front even if the stream
    is short, while chunked reads stop at the real end of the data.
    """
    buf = bytearray()
    while len(buf) < limit:
        chunk = fh.read(min(_CHUNK, limit - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _is_gzip(raw: BinaryIO) -> bool:
    """Whether a file starts with the gzip magic; leaves the position at the start.

    Compression is detected from the content, not the name, so a gzip file
    that lost its ``.gz`` suffix still loads instead of failing on its magic.
    """
    head = raw.read(2)
    raw.seek(0)
    return head == _GZIP_MAGIC


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Parse one IDX file (plain or gzipped) into a uint8 array with ``expected_ndim`` dimensions
    (3 for images ``(N, H, W)``, 1 for labels); a bad file is a one-line ``DatasetError``.

    Layout: two zero bytes, a dtype code, the number of dimensions, then that
    many big-endian uint32 sizes, then the data. Only 0x08 (unsigned byte)
    data is supported; that is what image and label files use.
    """
    try:
        with contextlib.ExitStack() as stack:
            fh: BinaryIO = stack.enter_context(path.open("rb"))
            compressed = _is_gzip(fh)
            if compressed:
                # GzipFile does not close a file object it was given; the stack does.
                fh = stack.enter_context(gzip.GzipFile(fileobj=fh, mode="rb"))  # type: ignore[arg-type]
            magic = _read_at_most(fh, 4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
                shown = f"0x{magic.hex()}" if magic else "(empty file)"
                raise DatasetError(
                    f"{path}: bad IDX magic number {shown} (expected 0x0000 followed by a dtype "
                    "code and dimension count); check that this is an unmodified MNIST-style IDX file"
                )
            dtype_code, ndim = magic[2], magic[3]
            if dtype_code != 0x08:
                kind = _IDX_DTYPE_NAMES.get(dtype_code, "unknown")
                raise DatasetError(
                    f"{path}: unsupported IDX dtype code 0x{dtype_code:02x} ({kind}); "
                    "only 0x08 (unsigned byte) files are supported, convert the data to uint8"
                )
            if ndim != expected_ndim:
                raise DatasetError(
                    f"{path}: IDX file has {ndim} dimensions, expected {expected_ndim}; "
                    "check that images and labels files are not swapped"
                )
            dims_raw = _read_at_most(fh, 4 * ndim)
            header_len = 4 + 4 * ndim
            if len(dims_raw) < 4 * ndim:
                raise DatasetError(
                    f"{path}: truncated IDX header, expected {header_len} bytes but the file ends "
                    f"after {4 + len(dims_raw)}; re-download the file"
                )
            dims = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
            expected = header_len + math.prod(dims)
            # Read one byte past the declared size: enough to detect trailing
            # data, never enough for a decompression bomb to exhaust memory.
            payload = _read_at_most(fh, math.prod(dims) + 1)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise DatasetError(f"{path}: cannot read IDX file ({err}); re-download the file") from err

    actual = header_len + len(payload)
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its header declares"
        shown = f"{actual}" if actual < expected else f"at least {actual}"
        unit = "decompressed bytes" if compressed else "bytes"
        raise DatasetError(
            f"{path}: file is {what}: header {dims} implies {expected} {unit}, found {shown}; re-download the file"
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def find_idx_images(folder: Path) -> Path | None:
    """The MNIST-style IDX images file in ``folder`` (``train-images-idx3-ubyte``, gzipped or not,
    in either spelling), or None when there is none."""
    return _first_existing(folder, _IDX_IMAGE_NAMES)


def _first_existing(folder: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _require_folder(data_dir: str | os.PathLike[str] | None, loader: str) -> Path:
    if data_dir is None:
        raise DatasetError(f"{loader} needs a data folder; pass data_dir")
    folder = Path(data_dir).expanduser()
    if not folder.exists():
        raise DatasetError(f"{folder}: data folder does not exist; check the path")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: is a file, not a folder; pass the folder that contains it")
    return folder


def load_mnist_idx(*, data_dir: str | os.PathLike[str], image_size: int | None = None) -> ImageDataset:
    """Load an MNIST-style IDX training set from a folder (plain or gzip files).

    The labels file is optional, because unlabelled IDX sets are legitimate;
    when present, its count must match the images.
    """
    check_image_size(image_size)
    folder = _require_folder(data_dir, "load_mnist_idx")
    images_path = _first_existing(folder, _IDX_IMAGE_NAMES)
    if images_path is None:
        raise DatasetError(
            f"{folder}: no IDX images file found (looked for {', '.join(_IDX_IMAGE_NAMES)}); "
            "put the MNIST training images there"
        )
    images_np = read_idx(images_path, expected_ndim=3)
    n, h, w = images_np.shape
    if h != w and image_size is None:
        raise DatasetError(f"{images_path}: images are {h}x{w}, not square; pass image_size to resize them")

    labels: torch.Tensor | None = None
    labels_path = _first_existing(folder, _IDX_LABEL_NAMES)
    if labels_path is not None:
        labels_np = read_idx(labels_path, expected_ndim=1)
        if labels_np.shape[0] != n:
            raise DatasetError(
                f"{labels_path}: has {labels_np.shape[0]} labels but {images_path.name} has {n} images; "
                "use the labels file that belongs to these images"
            )
        labels = torch.from_numpy(labels_np).to(torch.int64)

    images = rearrange(torch.from_numpy(images_np), "n h w -> n 1 h w")
    if image_size is not None:
        images = resize_uint8(images, image_size)
    return ImageDataset(images=images.contiguous(), labels=labels, name=f"mnist-idx:{folder.name}")


# ---------------------------------------------------------------------------
# Folders of PNG / JPEG files
# ---------------------------------------------------------------------------

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Modes whose pixels carry no colour; "P" (palette) may hold colour, so it is not here.
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})


def find_images(folder: Path) -> list[Path]:
    """All PNG/JPEG files below ``folder`` (any depth), in a stable order independent of the
    filesystem: sorted by their path under ``folder``."""
    found = [p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit grayscale as 8-bit by scaling (Pillow's ``convert("L")`` clips it: a 16-bit PNG
    came out 98% white). Pillow opens such PNGs as ``I;16*`` or, in older versions, ``I``;
    an ``I`` image whose values fit in a byte is left alone."""
    if not (img.mode.startswith("I;16") or img.mode == "I"):
        return img
    values = np.asarray(img, dtype=np.int64)
    if img.mode == "I" and values.size and values.min() >= 0 and values.max() <= 255:
        return Image.fromarray(values.astype(np.uint8), "L")
    scaled = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)  # 65535 -> 255
    return Image.fromarray(scaled, "L")


def load_image(path: Path, mode: str, image_size: int) -> np.ndarray:
    """One image file as the ``image-folder`` dataset reads it: decoded, turned upright by its EXIF
    orientation, 16-bit grey scaled to 8 bits, converted to ``mode`` ("L" or "RGB"), centre-cropped
    to a square and resized (bicubic) to ``image_size``. Returns uint8 ``(H, W)`` for "L",
    ``(H, W, 3)`` for "RGB"; Pillow's ``OSError``/``ValueError`` pass through for the caller to
    name the file."""
    with Image.open(path) as img:
        # draft() lets the JPEG decoder downscale by 2/4/8 while decoding, which is
        # much faster for large photos; it never goes below the requested size.
        img.draft(mode, (image_size, image_size))
        # Phone photos often store their rotation in EXIF rather than in the pixels.
        img = ImageOps.exif_transpose(img)
        img = _to_8bit(img)
        img = img.convert(mode)
        img = ImageOps.fit(img, (image_size, image_size), method=Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.uint8)


IMAGE_FOLDER_SIZE = 64  # an image folder's own size: its files may have any sizes


def load_image_folder(
    *,
    data_dir: str | os.PathLike[str],
    image_size: int | None = IMAGE_FOLDER_SIZE,
    channels: int | None = None,
) -> ImageDataset:
    """Load every PNG/JPEG below a folder as square ``image_size`` images (``None``, what
    ``train`` passes without ``--image-size``: 64).

    Images are center-cropped to a square (so nothing is stretched) and resized
    with bicubic filtering. ``channels=None`` picks 1 when every file is
    grayscale and 3 otherwise. The files carry no labels.
    """
    if image_size is None:
        image_size = IMAGE_FOLDER_SIZE
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    folder = _require_folder(data_dir, "load_image_folder")
    paths = find_images(folder)
    if not paths:
        raise DatasetError(
            f"{folder}: no images found (searched recursively for "
            f"{', '.join('*' + s for s in _IMAGE_SUFFIXES)}, any letter case); add images or fix the path"
        )

    def unreadable(path: Path, err: Exception) -> DatasetError:
        return DatasetError(f"{path}: cannot read image ({type(err).__name__}: {err}); fix or remove the file")

    if channels is None:
        # Opening only reads the header, so this pass is cheap next to decoding.
        all_gray = True
        for path in paths:
            try:
                with Image.open(path) as img:
                    if img.mode not in _GRAY_MODES:
                        all_gray = False
                        break
            except (OSError, ValueError, Image.DecompressionBombError) as err:
                raise unreadable(path, err) from err
        channels = 1 if all_gray else 3

    mode = "L" if channels == 1 else "RGB"
    arrays: list[np.ndarray] = []
    for path in paths:
        try:
            arrays.append(load_image(path, mode, image_size))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise unreadable(path, err) from err

    stacked = torch.from_numpy(np.stack(arrays))
    if channels == 1:
        images = rearrange(stacked, "n h w -> n 1 h w")
    else:
        images = rearrange(stacked, "n h w c -> n c h w")
    return ImageDataset(images=images.contiguous(), labels=None, name=f"image-folder:{folder.name}")


# ---------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------


def uint8_to_float(images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 images (N, C, H, W) as float32 in [-1, 1] on ``device``, via x / 127.5 - 1: the
    scale G's outputs and D's inputs use.

    The uint8 tensor is moved first and converted on the device, so the
    transfer carries a quarter of the bytes. 0 and 255 map exactly to -1 and 1.
    """
    x = images.to(device=device, non_blocking=False).to(torch.float32)
    return x.div_(127.5).sub_(1.0)


def to_training_tensor(ds: ImageDataset, device: torch.device | str) -> torch.Tensor:
    """All images of ``ds`` as float32 (N, C, H, W) in [-1, 1] on ``device`` (:func:`uint8_to_float`)."""
    return uint8_to_float(ds.images, device)


load_digits.reads_data_dir = False  # packaged: train --data-dir is refused for it (ganrun_register_datasets)
