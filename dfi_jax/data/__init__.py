"""Data: image files, generated faces and shoes, landmarks, real datasets, and where a run's images come from."""
