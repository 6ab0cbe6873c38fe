"""Evaluation metrics for generated video (FVD with a Kinetics-400 I3D network)."""
