"""Deep Feature Interpolation in JAX: edit the faces of photos from Python.

  import dfi_jax
  editor = dfi_jax.load_editor()               # once: the network and the bank's labels
  edited = dfi_jax.edit(photo, "smiling", 3.0, editor=editor)
  edited["smiling"]                            # [1, H, W, 3] float32 in [0, 1]

`edit`, `load_editor`, `find_faces`, `default_config`, `Editor` and `RunError` live in
dfi_jax/runs/api.py and are imported on first use, so `from dfi_jax.data import faces` stays
light; `dir(dfi_jax)` lists them.
"""

_API = ("edit", "load_editor", "find_faces", "default_config", "Editor", "Face", "RunError")
__all__ = list(_API)


def __getattr__(name):
  if name in _API:
    from dfi_jax.runs import api  # pylint: disable=import-outside-toplevel
    return getattr(api, name)
  raise AttributeError(f"module 'dfi_jax' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_API))
