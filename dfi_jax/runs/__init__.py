"""Runs: the edit, inpaint, high-resolution and sweep runs, their state, and the Python API."""
