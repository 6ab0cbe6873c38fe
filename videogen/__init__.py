"""videogen: an open autoregressive / MaskGIT token video generator in JAX."""

__version__ = "0.1.0"
