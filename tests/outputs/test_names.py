"""Output names: made in one place, parsed back by the study and the sweep."""

import pytest

from dfi_jax.outputs import names


def test_an_edit_name_parses_back_to_its_image_attribute_and_delta():
  for image, attribute, delta in [("face3", "smiling", 1.0), ("me__x", "older+eyeglasses", 2.5),
                                  ("p.v2", "moustache", -1.0)]:
    made = names.edit_name(image, attribute, delta)
    assert made == f"edits/{image}__{attribute}__d{delta:g}.png"
    assert names.parse_edit_name(made) == (image, attribute, delta)
  assert names.edit_stem("a", "b", 3) == "a__b__d3"
  assert names.output_name("a", "b", "pixel", "baselines") == "baselines/a__b__pixel.png"
  assert names.output_name("a", "b", "", "animations", ".gif") == "animations/a__b.gif"


@pytest.mark.parametrize("bad", ["edits/a__b__x1.png", "edits/a__b.png", "edits/a____d1.png",
                                 "edits/a__b__d.png", "edits/a__b__dz.png"])
def test_other_names_are_refused_naming_the_pattern(bad):
  with pytest.raises(ValueError, match="<image>__<attribute>__d<delta>.png"):
    names.parse_edit_name(bad)
