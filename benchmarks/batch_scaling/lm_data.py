"""Word-level language-model corpora for the ``lstm_lm`` task (offline only).

Nothing is downloaded: every corpus is read from files already on disk.

* ``ptb``: the Penn Treebank in Mikolov's preprocessed form, the corpus of the
  LEGW paper §5.1.2 (10,000 words, ``<unk>`` for the rest): a directory
  (``data_dir``, ``--data-dir``) holding ``ptb.train.txt``, ``ptb.valid.txt``
  and ``ptb.test.txt``. Read as TensorFlow's PTB reader does: each line's
  whitespace-separated words, then ``<eos>``.
* ``fortunes``: the offline default, because PTB cannot be fetched here: the
  English text of the Debian package ``fortunes``
  (``/usr/share/games/fortunes/``; ``apt-get install fortunes``), about
  16,000 quotations, jokes and short stories (~0.5 M words). It is real
  English prose but *not* PTB: perplexities on it are not comparable with the
  paper's. The fixed rule that makes it PTB-like:

  - files: every fortune file in the directory (regular files, no ``.dat``,
    no ``.u8`` links) in sorted name order, except ``ascii-art`` (pictures);
  - fortunes are separated by lines holding ``%``; terminal overstrikes
    (``X<backspace>X`` bold, ``_<backspace>X`` underline) are removed;
  - split by position: fortune number n (0-based, over the files in order)
    goes to *valid* if n % 10 == 8, to *test* if n % 10 == 9, else to
    *train* (80 / 10 / 10);
  - tokens as in Mikolov's PTB: lower case, words are runs of letters (with
    inner apostrophes: ``don't``), every number becomes ``N``, punctuation
    is dropped, and each fortune ends with ``<eos>``.

The vocabulary is built from the training split alone: the ``max_vocab``
most frequent words (ties by spelling), always including ``<unk>``, to which
every other word maps (PTB already has exactly 10,000 words).

For the benchmark each split's token stream is cut into non-overlapping
windows of ``seq_len + 1`` tokens overlapping by one: ``x = ids[i*T:(i+1)*T]``
and ``y = ids[i*T+1:(i+1)*T+1]`` (next-word targets), and each window is an
independent example (the LSTM state starts at zero in every window; the
TensorFlow PTB tutorial instead carries the state across consecutive windows).

Usage::

    from benchmarks.batch_scaling.lm_data import load_corpus, load_lm_dataset
    corpus = load_corpus("fortunes")            # Corpus(train, valid, test, vocab)
    x_train, y_train, x_test, y_test = load_lm_dataset("fortunes")
    # int32 arrays of shape (N, 20): inputs and next-word targets
"""

from __future__ import annotations

import collections
import functools
import os
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from benchmarks.data import Dataset, DatasetNotFoundError

LM_DATASETS = ("fortunes", "ptb")
FORTUNES_DIR = "/usr/share/games/fortunes"
FORTUNES_EXCLUDED = ("ascii-art",)
PTB_FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
EOS, UNK = "<eos>", "<unk>"
SEQ_LEN = 20
MAX_VOCAB = 10_000

_FORTUNES_HINT = (
  "The offline default corpus is the English text of the Debian package `fortunes`: "
  "install it with `apt-get install fortunes` (files under /usr/share/games/fortunes/), "
  "or use --dataset ptb --data-dir DIR with ptb.train.txt, ptb.valid.txt, ptb.test.txt."
)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*|[0-9]+(?:[.,:/-][0-9]+)*")
_OVERSTRIKE = re.compile(r".\x08")


class Corpus(NamedTuple):
  """Token ids of the three splits and the vocabulary (id -> word)."""

  train: np.ndarray
  valid: np.ndarray
  test: np.ndarray
  vocab: tuple[str, ...]

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)


# -- reading ---------------------------------------------------------------
def read_ptb_file(path: str | os.PathLike) -> list[str]:
  """The words of one PTB file: each line's words, then ``<eos>``."""
  with open(path, encoding="utf-8") as f:
    return [w for line in f for w in line.split() + [EOS]]


def read_ptb(data_dir: str) -> dict[str, list[str]]:
  """The three PTB splits as word lists.

  Raises:
    DatasetNotFoundError: naming the missing file.
  """
  splits = {}
  for split, name in PTB_FILES.items():
    path = os.path.join(data_dir, name)
    if not os.path.exists(path):
      raise DatasetNotFoundError(
        f"{name} not found in {data_dir!r}: the PTB loader needs ptb.train.txt, "
        "ptb.valid.txt and ptb.test.txt (Mikolov's preprocessed Penn Treebank). PTB is "
        "never downloaded; without it use --dataset fortunes (apt-get install fortunes)."
      )
    splits[split] = read_ptb_file(path)
  return splits


def fortune_files(fortune_dir: str) -> list[str]:
  """The fortune files of a directory, sorted, by the fixed rule (module doc)."""
  names = []
  for name in sorted(os.listdir(fortune_dir)):
    path = os.path.join(fortune_dir, name)
    if (
      name.endswith((".dat", ".u8"))
      or name.startswith(".")
      or os.path.islink(path)
      or not os.path.isfile(path)
      or name in FORTUNES_EXCLUDED
    ):
      continue
    names.append(path)
  return names


def split_fortunes(text: str) -> list[str]:
  """A fortune file's entries: the blocks between lines holding ``%``."""
  while _OVERSTRIKE.search(text):
    text = _OVERSTRIKE.sub("", text)
  entries, block = [], []
  for line in text.splitlines():
    if line.strip() == "%":
      entries.append("\n".join(block))
      block = []
    else:
      block.append(line)
  entries.append("\n".join(block))
  return [e for e in entries if e.strip()]


def tokenize(text: str) -> list[str]:
  """PTB-style words: lower case, letters (inner apostrophes kept), numbers as ``N``."""
  return ["N" if m[0].isdigit() else m for m in _WORD.findall(text.lower())]


def read_fortunes(fortune_dir: str = FORTUNES_DIR) -> dict[str, list[str]]:
  """Train / valid / test word lists of a fortune directory (fixed rule, module doc).

  Raises:
    DatasetNotFoundError: when the directory or its files are missing, saying
      which package to install.
  """
  if not os.path.isdir(fortune_dir):
    raise DatasetNotFoundError(f"{fortune_dir!r} does not exist. {_FORTUNES_HINT}")
  files = fortune_files(fortune_dir)
  if not files:
    raise DatasetNotFoundError(f"no fortune files in {fortune_dir!r}. {_FORTUNES_HINT}")
  splits = {"train": [], "valid": [], "test": []}
  n = 0
  for path in files:
    with open(path, encoding="utf-8", errors="replace") as f:
      entries = split_fortunes(f.read())
    for entry in entries:
      split = {8: "valid", 9: "test"}.get(n % 10, "train")
      words = tokenize(entry)
      if words:
        splits[split].extend(words + [EOS])
      n += 1
  return splits


# -- vocabulary and windows ------------------------------------------------
def build_vocab(words: Sequence[str], max_vocab: int = MAX_VOCAB) -> tuple[str, ...]:
  """The ``max_vocab`` most frequent words (ties by spelling), with ``<unk>``.

  Raises:
    ValueError: for ``max_vocab < 2``.
  """
  if max_vocab < 2:
    raise ValueError(f"max_vocab must be >= 2; got {max_vocab}.")
  counts = collections.Counter(words)
  ranked = sorted(counts, key=lambda w: (-counts[w], w))
  vocab = [w for w in ranked if w != UNK][: max_vocab - 1]
  return tuple(sorted(vocab + [UNK], key=lambda w: (-counts.get(w, 0), w)))


def to_ids(words: Sequence[str], vocab: Sequence[str]) -> np.ndarray:
  """Word ids (int32); words outside ``vocab`` map to ``<unk>``."""
  index = {w: i for i, w in enumerate(vocab)}
  unk = index[UNK]
  return np.fromiter((index.get(w, unk) for w in words), np.int32, len(words))


def windows(ids: np.ndarray, seq_len: int = SEQ_LEN) -> tuple[np.ndarray, np.ndarray]:
  """Inputs and next-word targets, each (N, seq_len), N = (len(ids) - 1) // seq_len.

  Raises:
    ValueError: when there are fewer than ``seq_len + 1`` tokens.
  """
  n = (len(ids) - 1) // seq_len
  if n < 1:
    raise ValueError(f"{len(ids)} tokens cannot fill one window of {seq_len} + 1.")
  x = ids[: n * seq_len].reshape(n, seq_len)
  y = ids[1 : n * seq_len + 1].reshape(n, seq_len)
  return np.ascontiguousarray(x, np.int32), np.ascontiguousarray(y, np.int32)


def load_corpus(
  name: str = "fortunes", data_dir: str | None = None, max_vocab: int = MAX_VOCAB
) -> Corpus:
  """Reads a corpus from disk and maps it to ids of the training vocabulary.

  Args:
    name: ``"fortunes"`` (``data_dir`` defaults to /usr/share/games/fortunes)
      or ``"ptb"`` (``data_dir`` required).
    data_dir: the directory to read.
    max_vocab: vocabulary size cap (10,000 as PTB).

  Raises:
    DatasetNotFoundError: with how to get the files.
    ValueError: for an unknown name.
  """
  if name == "ptb":
    if data_dir is None:
      raise DatasetNotFoundError(
        "dataset 'ptb' needs --data-dir DIR holding ptb.train.txt, ptb.valid.txt and "
        "ptb.test.txt; it is never downloaded. The offline default is --dataset "
        "fortunes (apt-get install fortunes)."
      )
    splits = read_ptb(data_dir)
  elif name == "fortunes":
    splits = read_fortunes(data_dir or FORTUNES_DIR)
  else:
    raise ValueError(f"unknown language-model dataset {name!r}; choose one of {LM_DATASETS}.")
  vocab = build_vocab(splits["train"], max_vocab)
  return Corpus(*(to_ids(splits[s], vocab) for s in ("train", "valid", "test")), vocab=vocab)


@functools.lru_cache(maxsize=4)
def _cached_corpus(name, data_dir, max_vocab):
  return load_corpus(name, data_dir, max_vocab)


def load_lm_dataset(
  name: str = "fortunes",
  data_dir: str | None = None,
  seed: int = 0,
  *,
  seq_len: int = SEQ_LEN,
  max_vocab: int = MAX_VOCAB,
  max_train_windows: int | None = None,
  eval_split: str = "test",
) -> Dataset:
  """(x_train, y_train, x_eval, y_eval) windows of a corpus, for the sweep.

  Args:
    name, data_dir, max_vocab: as :func:`load_corpus`.
    seed: unused (the splits are fixed); kept for the task-loader signature.
    seq_len: tokens per example (20, as the paper).
    max_train_windows: keep only the first this many training windows (a
      contiguous prefix of the text; the vocabulary is still the whole
      training split's), or None for all.
    eval_split: ``"test"`` or ``"valid"``.

  Returns:
    ``Dataset`` of int32 arrays shaped (N, seq_len).
  """
  del seed
  if eval_split not in ("test", "valid"):
    raise ValueError(f"eval_split must be 'test' or 'valid'; got {eval_split!r}.")
  corpus = _cached_corpus(name, data_dir, max_vocab)
  x_train, y_train = windows(corpus.train, seq_len)
  if max_train_windows is not None:
    x_train, y_train = x_train[:max_train_windows], y_train[:max_train_windows]
  x_eval, y_eval = windows(getattr(corpus, eval_split), seq_len)
  return Dataset(x_train, y_train, x_eval, y_eval)
