"""Kumar attribute parsing and the official binarisation (against a port of the release's
list-and-set code), the join, the folder CSV reader, crops; no tfds needed."""

import numpy as np
import pytest
from PIL import Image

from dfi_jax.dfi import neighbours as nb_lib
from dfi_jax.data.datasets import crop as crop_lib
from dfi_jax.data.datasets import fakes
from dfi_jax.data.datasets import folder
from dfi_jax.data.datasets import lfw_attributes as la
from dfi_jax.data.datasets.common import DatasetError, LazyImages

HEADER = "\t".join(["#", "person", "imagenum", *fakes.KUMAR_ATTRIBUTES])


def write_table(path, rows, header=HEADER):
  lines = ["# lfw attributes (test)", header]
  lines += ["\t".join([p, str(n), *(f"{v:g}" for v in scores)]) for p, n, scores in rows]
  path.write_text("\n".join(lines) + "\n")
  return path


def random_rows(n, seed=0, ties=False):
  rng = np.random.default_rng(seed)
  scores = rng.normal(0, 1, (n, 73))
  if ties:
    scores = np.round(scores * 2) / 2  # many equal scores: tie order matters
  return [(f"Person {i // 3}", i % 3 + 1, scores[i]) for i in range(n)]


def official_binarise(names, rows):
  """A port of the release's lfw_binarize_attributes.py (lists, sorted(), sets)."""
  S = {names[i]: sorted([j for j, x in enumerate(rows) if float(x[i]) > 0],
                        key=lambda k: -float(rows[k][i])) for i in range(len(names))}
  male = names.index("Male")
  S["Female"] = sorted([j for j, x in enumerate(rows) if float(x[male]) < 0],
                       key=lambda k: float(rows[k][male]))
  S = {k: v[:len(v) * 2 // 3] for k, v in S.items()}
  M, F = set(S["Male"]), set(S["Female"])
  G = {k: "Male" if sum(1 if j in M else (-1 if j in F else 0) for j in v) >= 0 else "Female"
       for k, v in S.items()}
  return S, G


@pytest.mark.parametrize("ties", [False, True])
def test_binarise_matches_official_port(tmp_path, ties):
  rows = random_rows(90, seed=int(ties), ties=ties)
  table = la.parse(write_table(tmp_path / "lfw_attributes.txt", rows))
  assert table.names[:4] == ["Person_0_0001", "Person_0_0002", "Person_0_0003", "Person_1_0001"]
  assert table.score_names == fakes.KUMAR_ATTRIBUTES and table.scores.shape == (90, 73)
  binary = la.binarise(table)
  S, G = official_binarise(list(table.score_names), [r[2] for r in rows])
  assert binary.attribute_names == tuple(sorted(S)) and len(binary.attribute_names) == 74
  for j, a in enumerate(binary.attribute_names):
    assert set(np.flatnonzero(binary.attributes[:, j])) == set(S[a]), a
    assert binary.gender[a] == G[a], a
  assert not np.any(binary.attributes[:, binary.attribute_names.index("Male")]
                    & binary.attributes[:, binary.attribute_names.index("Female")])
  group = binary.group
  assert set(np.flatnonzero(group == 0)) == set(S["Male"])
  assert set(np.flatnonzero(group == 1)) == set(S["Female"])


def official_make_manifolds(S, G, sorted_names, target, source, x, k):
  """A port of demo1.py's make_manifolds(b, [a], [], X=[x]) for index x, first k of each."""
  Ssets = {a: set(v) for a, v in S.items()}
  T = Ssets[G[target]]  # attribute_gender_members of the gender == that gender's set

  def dist(y, z):
    return sum((y in Ssets[b]) != (z in Ssets[b]) for b in sorted_names)

  n = max(max(v) for v in S.values() if v) + 1
  P = [i for i in range(n) if i in T and i not in Ssets[target] and i in Ssets[source]]
  P = sorted([j for j in P if j != x], key=lambda j: dist(x, j))
  Q = [i for i in range(n) if i in T and i in Ssets[target] and i not in Ssets[source]]
  Q = sorted([j for j in Q if j != x and j not in P], key=lambda j: dist(x, j))
  return P[:k], Q[:k]


def test_demo1_neighbours_match_official_make_manifolds(tmp_path):
  rows = random_rows(150, seed=3)
  table = la.parse(write_table(tmp_path / "lfw_attributes.txt", rows))
  binary = la.binarise(table)
  S, G = official_binarise(list(table.score_names), [r[2] for r in rows])
  edits = {e.name: e for e in la.edits(binary.attribute_names)}
  k = 5
  for name in la.DEMO1_EDITS:
    e = edits[name]
    gender = 0 if binary.gender[e.target_attribute] == "Male" else 1
    queries = np.flatnonzero(binary.group == gender)[:3]  # test images of the edit's gender
    candidates = nb_lib.candidate_masks(binary.attributes, e, binary.attribute_names)
    allowed = binary.group[queries][:, None] == binary.group[None, :]
    got = nb_lib.nearest(binary.attributes, binary.attributes[queries], candidates, k,
                         metric="hamming", exclude=queries.astype(np.int32), allowed=allowed)
    for b, x in enumerate(queries):
      want_p, want_q = official_make_manifolds(S, G, binary.attribute_names,
                                               e.target_attribute, e.source_attribute, x, k)
      assert list(np.asarray(got.source[b])) == want_p, name
      assert list(np.asarray(got.target[b])) == want_q, name


def test_demo1_edits_and_generic_ones():
  names = tuple(sorted(fakes.KUMAR_ATTRIBUTES + ("Female",)))
  edits = la.edits(names)
  assert [e.name for e in edits[:6]] == list(la.DEMO1_EDITS)
  assert edits[0] == nb_lib.Edit("senior", "Senior", "Youth")
  assert edits[5] == nb_lib.Edit("eyeglasses", "Eyeglasses", "No Eyewear")
  by_name = {e.name: e for e in edits}
  assert by_name["wearing_hat"] == nb_lib.Edit("wearing_hat", "Wearing Hat")
  assert by_name["5_o_clock_shadow"].target_attribute == "5 o' Clock Shadow"
  assert len(by_name) == len(edits) == 74  # six pairs replace six generic names
  for e in edits:
    nb_lib.attribute_index([e.target_attribute] + [e.source_attribute] * bool(e.source_attribute),
                           names)


@pytest.mark.parametrize("mutate, message", [
    (lambda ls: ls[:1], "no header line"),
    (lambda ls: [ls[0], ls[1].replace("\timagenum", "")] + ls[2:], "header has"),
    (lambda ls: ls + ["Bad Row\t1\t0.5"], "fields, expected 75"),
    (lambda ls: ls + ["Person 0\tone" + "\t0.1" * 73], "non-numeric"),
    (lambda ls: ls + [ls[2]], "already given on line 3"),
    (lambda ls: ls[:2], "no attribute rows"),
])
def test_parse_errors_are_one_line(tmp_path, mutate, message):
  path = write_table(tmp_path / "lfw_attributes.txt", random_rows(6))
  path.write_text("\n".join(mutate(path.read_text().splitlines())) + "\n")
  with pytest.raises(DatasetError, match=message) as e:
    la.parse(path)
  assert "\n" not in str(e.value)


def test_parse_missing_file_names_source(tmp_path):
  with pytest.raises(DatasetError, match="missing .*lfw_attributes.txt.*columbia"):
    la.parse(tmp_path / "lfw_attributes.txt")


def test_join_reports_both_sides():
  joined = la.join(["A_0001", "B_0001", "C_0001"], ["C_0001", "D_0001", "A_0001"])
  assert list(joined.table_rows) == [0, 2] and list(joined.image_rows) == [2, 0]
  assert joined.images_without_attributes == ["D_0001"]
  assert joined.attributes_without_images == ["B_0001"]
  assert "1 images without a row" in joined.summary() and "B_0001" in joined.summary()


# ------------------------------------------------------------------------------ folder CSV


def test_folder_table_binary_and_real_columns(tmp_path):
  csv = fakes.make_folder(tmp_path / "f", count=12)
  table = folder.read_table(csv)
  assert table.columns == ("smiling", "eyeglasses", "moustache", "age_score")
  assert list(table.binary) == [True, True, True, False]
  binary = folder.binarise(table, "official")
  age = table.values[:, 3]
  positive = np.flatnonzero(age > 0)
  assert binary[:, 3].sum() == len(positive) * 2 // 3
  assert np.all(age[binary[:, 3]] >= np.sort(age[positive])[len(positive) - binary[:, 3].sum()])
  assert np.array_equal(folder.binarise(table, "positive")[:, 3], age > 0)
  assert np.array_equal(binary[:, 1], table.values[:, 1] > 0)
  assert folder.read_table(csv, columns=("age_score",)).columns == ("age_score",)


@pytest.mark.parametrize("text, kwargs, message", [
    ("name,a\nx.png,1\n", dict(columns=("b",)), r"unknown column\(s\) \['b'\]"),
    ("file,a\nx.png,1\n", {}, "no column 'name'"),
    ("name,a\nx.png,maybe\n", {}, "line 2, column 'a': 'maybe' is not a number"),
    ("name,a\nx.png,1\ny.png,0\nx.png,1\n", {}, "line 4: duplicate name 'x.png' .first on line 2"),
    ("name,a,a\nx.png,1,1\n", {}, "duplicate column"),
    ("name,a\nx.png,1,3\n", {}, "3 fields"),
    ("name,a\n", {}, "no rows"),
    ("name\nx.png\n", {}, "no attribute columns"),
    ("name,a\nx.png," + "1" * 200_000 + "\n", {}, "not a CSV row .field larger than field limit"),
])
def test_folder_csv_errors(tmp_path, text, kwargs, message):
  path = tmp_path / "attributes.csv"
  path.write_text(text)
  with pytest.raises(DatasetError, match=message) as e:
    folder.read_table(path, **kwargs)
  assert "\n" not in str(e.value)


def test_folder_edits():
  cols = ("smiling", "no_beard", "mustache")
  assert folder.parse_edits((), cols) == tuple(nb_lib.Edit(c, c) for c in cols)
  assert folder.parse_edits(("no_beard->mustache",), cols) == (
      nb_lib.Edit("no_beard->mustache", "mustache", "no_beard"),)
  with pytest.raises(DatasetError, match=r"unknown column\(s\) \['beard'\]"):
    folder.parse_edits(("beard->mustache",), cols)


def test_empty_candidate_set_is_one_clear_line():
  attributes = np.zeros((10, 2), bool)
  attributes[:, 0] = True
  source, target = nb_lib.candidate_masks(attributes, nb_lib.Edit("b", "b"), ("a", "b"))
  with pytest.raises(ValueError, match="edit 'b' has only 10 source and 0 target candidates"):
    nb_lib.check_candidates(source, target, 3, "b")


# ------------------------------------------------------------------------------ crops


def test_crop_and_resize_official_boxes():
  image = np.zeros((250, 250, 3), np.uint8)
  image[50:200, 50:200] = 200  # the LFW centre box
  out = crop_lib.crop_and_resize(image, crop_lib.LFW_CROP, 200)
  assert out.shape == (200, 200, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out, 200 / 255, atol=1e-6)
  celeb = np.zeros((218, 178, 3), np.uint8)
  celeb[40:188, 15:163] = 100
  out = crop_lib.crop_and_resize(celeb, crop_lib.CELEB_A_CROP, 64)
  np.testing.assert_allclose(out, 100 / 255, atol=1e-6)
  # Shrinking is bicubic, enlarging Lanczos, as in the official imageutils.
  grad = np.tile(np.arange(250, dtype=np.uint8)[None, :, None], (250, 1, 3))
  want = np.asarray(Image.fromarray(grad[50:200, 50:200]).resize((100, 100),
                                                                 Image.Resampling.BICUBIC))
  np.testing.assert_array_equal(crop_lib.crop_and_resize(grad, crop_lib.LFW_CROP, 100),
                                want.astype(np.float32) / 255)
  with pytest.raises(ValueError, match="does not fit"):
    crop_lib.crop_and_resize(celeb, crop_lib.LFW_CROP, 64)


def test_parse_crop():
  assert crop_lib.parse_crop((), crop_lib.LFW_CROP) == crop_lib.LFW_CROP
  assert crop_lib.parse_crop((0, 0, 0, 0), crop_lib.LFW_CROP) == crop_lib.NO_CROP
  assert crop_lib.parse_crop([1, 2, 3, 4], crop_lib.LFW_CROP) == (1, 2, 3, 4)
  with pytest.raises(ValueError, match="top, left, height, width"):
    crop_lib.parse_crop((1, 2, 3), crop_lib.LFW_CROP)


def test_lazy_images_index_like_an_array():
  reads = []

  def read(i):
    reads.append(i)
    return np.full((4, 4, 3), i, np.float32)

  images = LazyImages(5, 4, read)
  assert len(images) == 5 and images.shape == (5, 4, 4, 3)
  assert images[2][0, 0, 0] == 2 and images[-1][0, 0, 0] == 4
  assert images[1:3].shape == (2, 4, 4, 3)
  np.testing.assert_array_equal(images[np.array([4, 0])][:, 0, 0, 0], [4, 0])
  assert np.asarray(images).shape == (5, 4, 4, 3)
  with pytest.raises(IndexError):
    images[5]
