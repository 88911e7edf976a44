"""Image datasets: the in-memory ``ImageDataset`` every loader returns (``base``) and the
built-in sources, one module each. The bundled digits file ships in ``_data/``."""

from registry.data.base import (
    DatasetError,
    GroundTruth,
    ImageDataset,
    find_idx_images,
    find_images,
    load_digits,
    load_image,
    load_image_folder,
    load_mnist_idx,
    read_idx,
    resize_uint8,
    to_training_tensor,
    uint8_to_float,
)

__all__ = [
    "DatasetError",
    "GroundTruth",
    "ImageDataset",
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
