"""dfi_jax/configs/variants.py: one variant mechanism for every config file."""

import ml_collections
import pytest

from dfi_jax.configs import variants


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.image_size = 64
  c.chroma_scale = 4
  return c


def test_a_variant_sets_its_fields_and_the_default_is_the_first():
  table = {"default": {}, "tiny": dict(image_size=32, chroma_scale=1)}
  assert variants.apply(base(), "", "x.py", table).to_dict() == {
      "image_size": 64, "chroma_scale": 4, "variant": "default"}
  assert variants.apply(base(), "tiny", "x.py", table).to_dict() == {
      "image_size": 32, "chroma_scale": 1, "variant": "tiny"}


def test_an_override_of_a_field_the_base_lacks_is_refused():
  table = {"default": {}, "tiny": dict(image_size=32, chroma_scael=1)}
  assert variants.apply(base(), "default", "x.py", table).variant == "default"
  with pytest.raises(ValueError, match=r"^variant 'tiny' of x\.py sets chroma_scael, not a field "
                                       r"of its base config$"):
    variants.apply(base(), "tiny", "x.py", table)


def test_resolve_lists_the_variants_in_the_error():
  assert variants.resolve("", "x.py", ("a", "b", "c")) == "a"
  with pytest.raises(ValueError, match=r"^unknown variant 'd' of x\.py; expected a, b or c$"):
    variants.resolve("d", "x.py", ("a", "b", "c"))
  with pytest.raises(ValueError, match=r"expected a or b$"):
    variants.resolve("d", "x.py", {"a": {}, "b": {}})
