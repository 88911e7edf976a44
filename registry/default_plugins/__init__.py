"""Plugins that ship with the framework and are always active (``registry.plugins.DEFAULT_PLUGINS``):
the built-in datasets, models and GAN losses, and TensorBoard logging. They use the same
hooks as any third-party plugin."""
