"""Config files the library reads itself: `synthetic.py`, the default run config."""
