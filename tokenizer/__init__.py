"""Causal 3D CNN video tokenizer (LFQ / FSQ / VQ). Lands with issue #3."""
