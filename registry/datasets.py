"""Deprecated alias of ``registry.data`` (moved in ganrun 0.2.0, removed in 0.3.0); every name
warns with the import to use instead."""

from registry.deprecation import alias

_MOVED = {
    "DatasetError": "registry.data",
    "EpochSampler": "registry.train",
    "ImageDataset": "registry.data",
    "load_digits": "registry.data",
    "load_image_folder": "registry.data",
    "load_mnist_idx": "registry.data",
    "to_training_tensor": "registry.data",
}
__all__ = sorted(_MOVED)
__getattr__, __dir__ = alias(__name__, _MOVED)
