"""Config files the library reads itself: `synthetic.py`, the default run config, and
`variants`, the variant tables every config file goes through."""
