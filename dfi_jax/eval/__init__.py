"""Evaluation: edit metrics, the linear probe, the attribute judge, the perceptual study."""
