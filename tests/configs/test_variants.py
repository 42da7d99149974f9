"""dfi_jax/configs/variants.py: one variant mechanism for every config file."""

import importlib
from pathlib import Path

import ml_collections
import pytest

from dfi_jax.configs import variants
from experiments.configs import inpaint
from experiments.configs import synthetic

ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILES = sorted(p for p in [*ROOT.glob("experiments/configs/*.py"),
                                  ROOT / "dfi_jax/configs/synthetic.py"]
                      if p.stem != "__init__")
# experiments/configs/synthetic.py re-exports dfi_jax/configs/synthetic.py's get_config.
TABLE_FILES = [p for p in CONFIG_FILES if p != ROOT / "experiments/configs/synthetic.py"]


def module_of(path: Path):
  return importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.image_size = 64
  c.chroma_scale = 4
  return c


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_an_unknown_variant_of_every_config_file_is_one_line_naming_the_file(path):
  module = module_of(path)
  with pytest.raises(ValueError) as e:
    module.get_config("tinny")
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith(f"unknown variant 'tinny' of {path.name}; expected ")
  assert "tiny" in message  # every file has one, for the tests


@pytest.mark.parametrize("path", TABLE_FILES, ids=lambda p: p.stem)
def test_every_variant_of_every_table_builds_and_names_itself(path):
  module = module_of(path)
  for variant in module.VARIANTS:
    assert module.get_config(variant).variant == variant
  assert module.get_config("").variant == module.get_config().variant == next(iter(module.VARIANTS))


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


def test_a_derived_config_starts_from_synthetic_tiny_for_each_tiny_variant():
  assert inpaint.get_config("shoes_tiny").image_size == synthetic.get_config("tiny").image_size
  assert inpaint.get_config("shoes").image_size == synthetic.get_config("demo").image_size
