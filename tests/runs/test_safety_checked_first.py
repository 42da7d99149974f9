"""Reliability, round two (issue 18): no run destroys work, every failure is one early line.

Class 2: every setting and input is checked before the workdir is claimed.
"""

import ml_collections
import pytest

from dfi_jax.dfi import decoder as decoder_lib
from dfi_jax.runs import edit as edit_run
from dfi_jax.runs import kit
from dfi_jax.runs import highres
from dfi_jax.data import image_io
from dfi_jax.runs import inpaint
from dfi_jax.base import run_state
from dfi_jax.data import shoes
from dfi_jax.nets import train
from experiments.configs import decoder as decoder_config
from experiments.configs import features as features_config
from experiments.configs import highres as highres_config
from experiments.configs import inpaint as inpaint_config
from experiments.configs import synthetic
from tiny_run import tiny

ATTRIBUTE = ["smiling"]


# --- 2. every setting and input checked before the workdir is claimed -------------------------


@pytest.mark.parametrize("field, value, words", [(f, v, "") for f, v in [
    ("chunk", 0), ("feature_batch", 0), ("linesearch", "bogus"), ("linesearch_init", "bogus"),
    ("pixel_deltas", (float("nan"),)), ("pixel_delta_photos", float("inf")), ("batch_size", 0),
    ("next_iterations", -1), ("num_test", 0), ("bank_size", 0), ("probe", "cnn"),
    ("pooling", "max"), ("preprocessing", "bgr"), ("align_neighbours", "yes"), ("seed", -1),
    ("deltas", (0.4, 0.4)), ("deltas", (0.4, 0.4000001)), ("attributes", ("smiling",) * 2),
    ("tv_beta", float("nan")), ("iterations", 2.5), ("k", True), ("decoder", 3),
    ("align", "faces"), ("faces", "some"), ("face_threshold", float("nan")), ("animate", "mp4")]
] + [
    ("k", 0, "expected a positive integer"), ("tv_beta", 0.0, "expected β > 0"),
    ("tv_weight", -1.0, "expected λ >= 0"), ("iterations", 0, ""),
    ("image_size", 20, "expected an integer in [32, 1024]")])
def test_bad_setting_fails_before_anything_is_written(tmp_path, field, value, words):
  config = ml_collections.ConfigDict({**tiny().to_dict(), field: value})  # values of any type
  with pytest.raises(run_state.RunError, match=rf"^--config\.{field}=.*: expected ") as e:
    edit_run.run(config, tmp_path / "w", attributes=ATTRIBUTE)
  assert words in str(e.value)
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("config, rules", [
    (synthetic.get_config("tiny"), kit.RULES),
    (inpaint_config.get_config("shoes"), {**kit.RULES, **inpaint.RULES}),
    (highres_config.get_config("tiny"), {**kit.RULES, **highres.RULES}),
    (features_config.get_config("tiny"), train.CONFIG_RULES),
    (decoder_config.get_config("tiny"), decoder_lib.TRAINING_RULES),
], ids=["synthetic", "inpaint", "highres", "features", "decoder"])
def test_every_config_field_has_a_check(config, rules):
  assert sorted(set(config) - set(rules) - {"data"}) == []  # kit.validate checks `data`


def test_failure_after_the_lock_leaves_no_claim_and_no_folder(tmp_path):
  with pytest.raises(ValueError, match="unknown attribute"):
    edit_run.run(tiny(), tmp_path / "new" / "w", attributes=["nosuch"])
  assert list(tmp_path.iterdir()) == []  # the folders it made are gone


def test_corrupt_image_in_an_inpainting_bank_leaves_no_claim(tmp_path):
  folder = tmp_path / "bank"
  shoes.write_folder(folder, 12, seed=1, width=48)
  (folder / "broken.jpg").write_text("not a jpeg")
  config = inpaint_config.get_config("shoes_tiny")
  config.bank_dir, config.procedural_shoes, config.k = str(folder), 0, 3
  with pytest.raises(image_io.ImageError, match="broken.jpg"):
    inpaint.run(config, tmp_path / "w")
  assert not (tmp_path / "w").exists()
  (folder / "broken.jpg").unlink()
  record = inpaint.run(config, tmp_path / "w")  # the corrected rerun is not refused
  assert len(record["per_image"]) == config.num_test


def test_highres_checks_candidates_before_the_workdir(tmp_path):
  config = highres_config.get_config("tiny")
  config.k, config.rerank = 3, 2
  with pytest.raises(run_state.RunError, match="--config.k=3 but only 2 candidates"):
    highres.run(config, tmp_path / "w")
  assert not (tmp_path / "w").exists()
