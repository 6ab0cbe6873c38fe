"""Data: the built-in captioned world, real-data sources, and the sharded input pipeline."""
