"""The framework's own plugin: built-in datasets, models and adversarial losses.

It is registered like any third-party plugin, through the same hooks.
"""

from __future__ import annotations

from registry.data import base as datasets, shapes
from registry.nets import losses, models
from registry.plugins import hookimpl


@hookimpl
def ganrun_register_datasets(register):
    register("digits", datasets.load_digits)
    register("mnist-idx", datasets.load_mnist_idx)
    register("image-folder", datasets.load_image_folder)
    register("shapes", shapes.load_shapes)


@hookimpl
def ganrun_register_models(register):
    register("dcgan28", models.dcgan28)
    register("dcgan64", models.dcgan64)
    register("conv64", models.conv64)


@hookimpl
def ganrun_register_gan_losses(register):
    register("nonsaturating", losses.NONSATURATING)
    register("hinge", losses.HINGE)
