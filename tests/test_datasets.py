"""Tests for registry.data: loaders, error messages and the resumable sampler."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from registry.data import (
    DatasetError,
    ImageDataset,
    load_digits,
    load_image_folder,
    load_mnist_idx,
    to_training_tensor,
)
from registry.train import EpochSampler

# ---------------------------------------------------------------------------
# Built-in digits
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_digits()


def test_digits_shape_and_labels(digits: ImageDataset) -> None:
    assert len(digits) == 10_000
    assert digits.images.shape == (10_000, 1, 28, 28)
    assert digits.images.dtype == torch.uint8
    assert digits.channels == 1 and digits.image_size == 28
    assert digits.labels is not None and digits.labels.dtype == torch.int64
    assert digits.labels[:5].tolist() == [5, 0, 4, 1, 9]
    counts = torch.bincount(digits.labels, minlength=10).tolist()
    assert counts == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


def test_digits_ignores_data_dir_and_resizes(tmp_path: Path) -> None:
    small = load_digits(data_dir=tmp_path / "not-there", image_size=16)
    assert small.images.shape == (10_000, 1, 16, 16)
    assert small.images.dtype == torch.uint8
    # A resized digit is still a bright stroke on a dark background.
    assert small.images[0].float().mean() < 80 and small.images[0].max() > 150


def test_to_training_tensor_range(digits: ImageDataset) -> None:
    x = to_training_tensor(digits, "cpu")
    assert x.dtype == torch.float32 and x.shape == digits.images.shape
    assert x.min().item() == -1.0 and x.max().item() == 1.0


def test_to_training_tensor_formula() -> None:
    ramp = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    ds = ImageDataset(images=ramp, labels=None, name="ramp")
    x = to_training_tensor(ds, torch.device("cpu"))
    torch.testing.assert_close(x, ramp.float() / 127.5 - 1.0)


def test_image_dataset_validates_shapes() -> None:
    with pytest.raises(ValueError, match="square"):
        ImageDataset(images=torch.zeros(2, 1, 4, 5, dtype=torch.uint8), labels=None, name="x")
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(images=torch.zeros(2, 1, 4, 4, dtype=torch.uint8), labels=torch.zeros(3), name="x")
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(images=torch.zeros(2, 1, 4, 4), labels=None, name="x")


# ---------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, *, dtype_code: int = 0x08) -> bytes:
    """Serialize an array in IDX layout: 0, 0, dtype code, ndim, big-endian u32 dims, data."""
    header = bytes([0, 0, dtype_code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.tobytes()


def write_idx(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.fixture()
def small_idx() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (7, 5, 5), dtype=np.uint8), rng.integers(0, 10, 7, dtype=np.uint8)


@pytest.mark.parametrize(
    ("images_name", "labels_name"),
    [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        ("train-images.idx3-ubyte", "train-labels.idx1-ubyte"),
    ],
)
def test_idx_round_trip(
    tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray], images_name: str, labels_name: str
) -> None:
    images, labels = small_idx
    write_idx(tmp_path / images_name, idx_bytes(images))
    write_idx(tmp_path / labels_name, idx_bytes(labels))
    ds = load_mnist_idx(data_dir=tmp_path)
    assert ds.images.shape == (7, 1, 5, 5) and ds.images.dtype == torch.uint8
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), images)
    assert ds.labels is not None and ds.labels.dtype == torch.int64
    np.testing.assert_array_equal(ds.labels.numpy(), labels)


def test_idx_without_labels_and_resize(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte", idx_bytes(small_idx[0]))
    ds = load_mnist_idx(data_dir=str(tmp_path), image_size=3)
    assert ds.labels is None
    assert ds.images.shape == (7, 1, 3, 3)


def test_idx_gzip_without_suffix_is_detected(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]) -> None:
    (tmp_path / "train-images-idx3-ubyte").write_bytes(gzip.compress(idx_bytes(small_idx[0])))
    np.testing.assert_array_equal(load_mnist_idx(data_dir=tmp_path).images[:, 0].numpy(), small_idx[0])


def assert_one_line_naming(err: pytest.ExceptionInfo[DatasetError], name: str) -> str:
    message = str(err.value)
    assert name in message
    assert "\n" not in message
    return message


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_bad_magic(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray], suffix: str) -> None:
    data = b"\x12\x34" + idx_bytes(small_idx[0])[2:]
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", data)
    with pytest.raises(DatasetError) as err:
        load_mnist_idx(data_dir=tmp_path)
    message = assert_one_line_naming(err, f"train-images-idx3-ubyte{suffix}")
    assert "0x12340803" in message


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_truncated(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray], suffix: str) -> None:
    data = idx_bytes(small_idx[0])
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", data[:-10])
    with pytest.raises(DatasetError) as err:
        load_mnist_idx(data_dir=tmp_path)
    message = assert_one_line_naming(err, f"train-images-idx3-ubyte{suffix}")
    assert "truncated" in message and str(len(data)) in message and str(len(data) - 10) in message


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_trailing_data(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray], suffix: str) -> None:
    # Also what a decompression bomb looks like: more data than the header declares.
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", idx_bytes(small_idx[0]) + bytes(100_000))
    with pytest.raises(DatasetError) as err:
        load_mnist_idx(data_dir=tmp_path)
    assert "longer than its header" in assert_one_line_naming(err, f"train-images-idx3-ubyte{suffix}")


def test_idx_truncated_gzip_stream(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]) -> None:
    compressed = gzip.compress(idx_bytes(small_idx[0]))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DatasetError) as err:
        load_mnist_idx(data_dir=tmp_path)
    assert_one_line_naming(err, "train-images-idx3-ubyte.gz")


def test_idx_corrupt_gzip_body(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]) -> None:
    compressed = bytearray(gzip.compress(idx_bytes(small_idx[0]), mtime=0))
    compressed[20:40] = bytes(range(200, 220))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(bytes(compressed))
    with pytest.raises(DatasetError) as err:
        load_mnist_idx(data_dir=tmp_path)
    assert_one_line_naming(err, "train-images-idx3-ubyte.gz")


def test_idx_label_count_mismatch(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = small_idx
    write_idx(tmp_path / "train-images-idx3-ubyte", idx_bytes(images))
    write_idx(tmp_path / "train-labels-idx1-ubyte", idx_bytes(labels[:5]))
    with pytest.raises(DatasetError) as err:
        load_mnist_idx(data_dir=tmp_path)
    message = assert_one_line_naming(err, "train-labels-idx1-ubyte")
    assert "5 labels" in message and "7 images" in message


def test_idx_unsupported_dtype(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte", idx_bytes(small_idx[0], dtype_code=0x0D))
    with pytest.raises(DatasetError) as err:
        load_mnist_idx(data_dir=tmp_path)
    assert "0x0d" in assert_one_line_naming(err, "train-images-idx3-ubyte")


def test_idx_wrong_dimensions(tmp_path: Path, small_idx: tuple[np.ndarray, np.ndarray]) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte", idx_bytes(small_idx[1]))
    with pytest.raises(DatasetError) as err:
        load_mnist_idx(data_dir=tmp_path)
    assert_one_line_naming(err, "train-images-idx3-ubyte")


def test_idx_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_mnist_idx(data_dir=tmp_path / "nowhere")
    assert_one_line_naming(err, "nowhere")


def test_idx_missing_images_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_mnist_idx(data_dir=tmp_path)
    message = assert_one_line_naming(err, tmp_path.name)
    assert "train-images-idx3-ubyte.gz" in message and "train-images.idx3-ubyte" in message


# ---------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------


def test_image_folder_mixed_is_rgb_sorted_and_cropped(tmp_path: Path) -> None:
    # Wide image: red | green | red bands; the center crop must keep only green.
    wide = np.zeros((24, 72, 3), dtype=np.uint8)
    wide[:, :, 0] = 255
    wide[:, 24:48] = (0, 255, 0)
    Image.fromarray(wide).save(tmp_path / "a_wide.png")
    Image.new("L", (20, 30), 200).save(tmp_path / "b_gray.png")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (40, 40), (0, 0, 255)).save(tmp_path / "sub" / "c_blue.JPG", quality=95)
    (tmp_path / "notes.txt").write_text("not an image")

    ds = load_image_folder(data_dir=tmp_path, image_size=16)
    assert ds.images.shape == (3, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.channels == 3 and ds.labels is None
    center = ds.images[:, :, 4:12, 4:12].float().mean(dim=(2, 3))
    torch.testing.assert_close(center[0], torch.tensor([0.0, 255.0, 0.0]), atol=2, rtol=0)
    torch.testing.assert_close(center[1], torch.tensor([200.0, 200.0, 200.0]), atol=2, rtol=0)
    torch.testing.assert_close(center[2], torch.tensor([0.0, 0.0, 255.0]), atol=4, rtol=0)


def test_image_folder_infers_and_forces_channels(tmp_path: Path) -> None:
    Image.new("L", (10, 12), 50).save(tmp_path / "one.png")
    Image.new("L", (30, 30), 150).save(tmp_path / "two.jpeg")
    gray = load_image_folder(data_dir=tmp_path, image_size=8)
    assert gray.images.shape == (2, 1, 8, 8)
    forced = load_image_folder(data_dir=tmp_path, image_size=8, channels=3)
    assert forced.images.shape == (2, 3, 8, 8)

    Image.new("RGB", (9, 9), (10, 20, 30)).save(tmp_path / "three.png")
    assert load_image_folder(data_dir=tmp_path, image_size=8).channels == 3
    assert load_image_folder(data_dir=tmp_path, image_size=8, channels=1).images.shape == (3, 1, 8, 8)


def test_image_folder_empty(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no pictures here")
    with pytest.raises(DatasetError) as err:
        load_image_folder(data_dir=tmp_path)
    message = assert_one_line_naming(err, tmp_path.name)
    assert "*.png" in message and "*.jpg" in message and "*.jpeg" in message


def test_image_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_image_folder(data_dir=tmp_path / "absent")
    assert_one_line_naming(err, "absent")


def test_image_folder_unreadable_file(tmp_path: Path) -> None:
    Image.new("L", (8, 8)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"definitely not a png")
    for channels in (None, 1):
        with pytest.raises(DatasetError) as err:
            load_image_folder(data_dir=tmp_path, image_size=8, channels=channels)
        assert_one_line_naming(err, "broken.png")


# ---------------------------------------------------------------------------
# EpochSampler
# ---------------------------------------------------------------------------


def test_sampler_each_epoch_is_a_permutation() -> None:
    sampler = EpochSampler(24, 4, seed=3)
    assert sampler.steps_per_epoch == 6
    for epoch in range(3):
        steps = range(epoch * 6, (epoch + 1) * 6)
        seen = torch.cat([sampler.indices(s) for s in steps])
        assert sorted(seen.tolist()) == list(range(24))
    batch = sampler.indices(0)
    assert batch.dtype == torch.int64 and batch.shape == (4,) and batch.device.type == "cpu"


def test_sampler_drops_partial_batch() -> None:
    sampler = EpochSampler(10, 3, seed=0)
    assert sampler.steps_per_epoch == 3
    epoch0 = torch.cat([sampler.indices(s) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9


def test_sampler_seeds() -> None:
    def order(seed: int) -> list[int]:
        sampler = EpochSampler(50, 5, seed=seed)
        return torch.cat([sampler.indices(s) for s in range(20)]).tolist()

    assert order(7) == order(7)
    assert order(7) != order(8)
    # Consecutive epochs are shuffled differently.
    sampler = EpochSampler(50, 50, seed=7)
    assert sampler.indices(0).tolist() != sampler.indices(1).tolist()


def test_sampler_stateless_resume_across_epoch_boundary() -> None:
    running = EpochSampler(20, 4, seed=11)
    history = [running.indices(s) for s in range(15)]  # three epochs of five steps
    for step in (0, 3, 4, 5, 9, 10, 14):
        fresh = EpochSampler(20, 4, seed=11)
        assert torch.equal(fresh.indices(step), history[step]), step
    # Going back to an earlier epoch after the cache moved on still gives the same batch.
    assert torch.equal(running.indices(2), history[2])


def test_sampler_ranks_are_disjoint_and_cover_epoch() -> None:
    ranks = [EpochSampler(40, 5, seed=1, rank=r, world_size=2) for r in range(2)]
    assert ranks[0].steps_per_epoch == 4
    for epoch in range(2):
        steps = range(epoch * 4, (epoch + 1) * 4)
        shards = [torch.cat([rk.indices(s) for s in steps]).tolist() for rk in ranks]
        assert not set(shards[0]) & set(shards[1])
        assert sorted(shards[0] + shards[1]) == list(range(40))
    # The union over ranks is the single-process batch at the same global batch size.
    single = EpochSampler(40, 10, seed=1)
    assert torch.equal(torch.cat([ranks[0].indices(5), ranks[1].indices(5)]), single.indices(5))


def test_sampler_cached_permutation_is_not_exposed() -> None:
    sampler = EpochSampler(8, 4, seed=0)
    first = sampler.indices(0).clone()
    sampler.indices(0).fill_(-1)
    assert torch.equal(sampler.indices(0), first)


def test_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(DatasetError, match="larger than the dataset"):
        EpochSampler(10, 11, seed=0)
    with pytest.raises(DatasetError, match="world size 2"):
        EpochSampler(10, 6, seed=0, rank=0, world_size=2)
    with pytest.raises(ValueError):
        EpochSampler(10, 0, seed=0)
    with pytest.raises(ValueError):
        EpochSampler(10, 2, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError):
        EpochSampler(10, 2, seed=0).indices(-1)


def test_sampler_accepts_large_and_negative_seeds() -> None:
    for seed in (-1, 2**62, 2**70):
        assert EpochSampler(6, 2, seed=seed).indices(4).shape == (2,)


def test_16_bit_grayscale_pngs_are_scaled_not_clipped(tmp_path: Path) -> None:
    """A 16-bit PNG (issue 18: 98% of pixels came out 255) keeps its tones: 16-bit value v
    becomes round(v / 257), so 0 stays 0 and 65535 becomes 255."""
    from registry.data import load_image_folder

    ramp = (np.arange(16 * 16, dtype=np.int64).reshape(16, 16) * 257).astype(np.uint16)  # 8-bit 0..255 as 16-bit
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    with Image.open(tmp_path / "ramp.png") as img:
        assert img.mode.startswith("I")  # really a 16-bit file
    data = load_image_folder(data_dir=tmp_path, image_size=16)
    pixels = data.images.numpy().reshape(-1)
    assert (pixels == 255).mean() < 0.01
    assert np.array_equal(np.sort(pixels), np.arange(256))
