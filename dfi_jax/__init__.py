"""Deep Feature Interpolation in JAX. `dfi_jax.edit` and `dfi_jax.load_editor` edit photos from
Python (dfi_jax/runs/api.py); they are imported on first use, so `from dfi_jax.data import faces` stays
light."""

_API = ("edit", "load_editor", "default_config", "Editor")


def __getattr__(name):
  if name in _API:
    from dfi_jax.runs import api  # pylint: disable=import-outside-toplevel
    return getattr(api, name)
  raise AttributeError(f"module 'dfi_jax' has no attribute {name!r}")
