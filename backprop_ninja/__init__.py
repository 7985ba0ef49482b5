"""Backprop Ninja: a course kit for manual backpropagation through a makemore MLP with batchnorm."""
__version__ = "0.1.0"
