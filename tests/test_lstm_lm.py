"""The lstm_lm task (LEGW paper §5.1.2): corpus loaders on tiny files, the model's shapes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks.batch_scaling import lm_data, lstm_lm
from benchmarks.data import DatasetNotFoundError


def _write_ptb(d, train, valid, test):
  for name, text in (("ptb.train.txt", train), ("ptb.valid.txt", valid), ("ptb.test.txt", test)):
    (d / name).write_text(text)


def test_ptb_reader_appends_eos_per_line_and_maps_unknown_words(tmp_path):
  _write_ptb(tmp_path, " the cat sat \n the dog <unk> sat \n", " the cow sat \n", " a cat \n")
  c = lm_data.load_corpus("ptb", str(tmp_path))
  # Train counts: the 2, sat 2, <eos> 2, cat 1, dog 1, <unk> 1 (ties by spelling).
  assert c.vocab == ("<eos>", "sat", "the", "<unk>", "cat", "dog")
  w = lambda ids: [c.vocab[i] for i in ids]
  assert w(c.train) == ["the", "cat", "sat", "<eos>", "the", "dog", "<unk>", "sat", "<eos>"]
  assert w(c.valid) == ["the", "<unk>", "sat", "<eos>"]  # "cow" is not in the vocabulary
  assert w(c.test) == ["<unk>", "cat", "<eos>"]


def test_vocabulary_cap_keeps_the_most_frequent_and_unk():
  words = "a a a b b c d <eos> <eos>".split()
  assert lm_data.build_vocab(words, 3) == ("a", "<eos>", "<unk>")
  assert lm_data.build_vocab(words, 100) == ("a", "<eos>", "b", "c", "d", "<unk>")
  ids = lm_data.to_ids("a z c".split(), ("a", "<eos>", "<unk>"))
  np.testing.assert_array_equal(ids, [0, 2, 2])
  with pytest.raises(ValueError, match="max_vocab"):
    lm_data.build_vocab(words, 1)


def test_windows_are_next_word_pairs():
  x, y = lm_data.windows(np.arange(11, dtype=np.int32), seq_len=3)
  np.testing.assert_array_equal(x, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
  np.testing.assert_array_equal(y, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
  assert x.dtype == y.dtype == np.int32
  with pytest.raises(ValueError, match="window"):
    lm_data.windows(np.arange(3), seq_len=3)


FORTUNE_FILE = """Fortune zero: Don't panic!  It's 42.
%
Fortune _\bo_\bn_\be is B\bBO\bOL\bLD.
\t\t-- Someone, 1999
%
two
%
three
%
four
%
five
%
six
%
seven
%
eight valid
%
nine test
%
ten train again
"""


def test_fortune_format_split_rule_overstrike_and_tokens(tmp_path):
  (tmp_path / "alpha").write_text(FORTUNE_FILE)
  (tmp_path / "alpha.dat").write_bytes(b"\x00\x01binary")
  (tmp_path / "ascii-art").write_text("  /\\_/\\\n ( o.o )\n%\n")
  (tmp_path / "alpha.u8").symlink_to(tmp_path / "alpha")
  assert [p.rsplit("/", 1)[1] for p in lm_data.fortune_files(str(tmp_path))] == ["alpha"]
  entries = lm_data.split_fortunes(FORTUNE_FILE)
  assert len(entries) == 11
  assert "one is BOLD." in entries[1]  # overstrikes removed
  splits = lm_data.read_fortunes(str(tmp_path))
  assert splits["train"][:9] == [
    "fortune",
    "zero",
    "don't",
    "panic",
    "it's",
    "N",
    "<eos>",
    "fortune",
    "one",
  ]
  assert splits["train"][9:14] == ["is", "bold", "someone", "N", "<eos>"]
  # Fortune n goes to valid when n % 10 == 8, to test when n % 10 == 9.
  assert splits["valid"] == ["eight", "valid", "<eos>"]
  assert splits["test"] == ["nine", "test", "<eos>"]
  assert splits["train"][-4:] == ["ten", "train", "again", "<eos>"]


def test_load_lm_dataset_from_fortune_dir(tmp_path):
  (tmp_path / "quotes").write_text(
    "\n%\n".join(f"saying number {i} is about cats and dogs and mice" for i in range(40)) + "\n"
  )
  d = lm_data.load_lm_dataset(
    "fortunes", str(tmp_path), seq_len=5, max_vocab=8, max_train_windows=10
  )
  x_train, y_train, x_test, y_test = d
  assert x_train.shape == y_train.shape == (10, 5)
  assert x_test.shape[1] == 5 and x_test.dtype == np.int32
  np.testing.assert_array_equal(x_train[:, 1:], y_train[:, :-1])
  assert x_train.max() < 8
  valid = lm_data.load_lm_dataset(
    "fortunes", str(tmp_path), seq_len=5, max_vocab=8, eval_split="valid"
  )
  assert valid.x_test.shape == (8, 5)  # 4 fortunes of 11 tokens: 43 // 5 windows
  with pytest.raises(ValueError, match="eval_split"):
    lm_data.load_lm_dataset("fortunes", str(tmp_path), eval_split="train")


def test_missing_corpora_say_what_to_install(tmp_path):
  with pytest.raises(DatasetNotFoundError, match="apt-get install fortunes"):
    lm_data.load_corpus("fortunes", str(tmp_path / "nowhere"))
  with pytest.raises(DatasetNotFoundError, match="apt-get install fortunes"):
    lm_data.load_corpus("fortunes", str(tmp_path))  # exists, but no fortune files
  with pytest.raises(DatasetNotFoundError, match="ptb.train.txt"):
    lm_data.load_corpus("ptb", str(tmp_path))
  with pytest.raises(DatasetNotFoundError, match="--data-dir"):
    lm_data.load_corpus("ptb", None)
  with pytest.raises(ValueError, match="unknown"):
    lm_data.load_corpus("wikitext", str(tmp_path))


def test_model_has_the_papers_shapes():
  model = lstm_lm.LstmLM()
  x = jnp.zeros((2, lstm_lm.SEQ_LEN), jnp.int32)
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  shapes = jax.tree.map(lambda a: a.shape, variables["params"])
  assert shapes["embed"]["embedding"] == (10_000, 200)
  assert shapes["lstm0"]["kernel"] == shapes["lstm1"]["kernel"] == (400, 800)  # §5.1.2
  assert shapes["softmax"]["kernel"] == (200, 10_000)
  out = jax.eval_shape(lambda v: model.apply(v, x), variables)
  assert out.shape == (2, 20, 10_000)


@pytest.mark.slow
def test_tiny_model_learns_a_repeating_text():
  # A cycle of 7 words: perplexity must fall well below the vocabulary size.
  ids = np.arange(400, dtype=np.int32) % 7
  x, y = lm_data.windows(ids, seq_len=6)
  model = lstm_lm.LstmLM(vocab_size=7, embed=16, hidden=16)
  params = model.init(jax.random.PRNGKey(0), x[:1])["params"]
  tx = optax.adam(0.05)
  opt = tx.init(params)

  def loss_fn(p):
    logits = model.apply({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(p, o):
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, loss

  first = None
  for _ in range(20):
    params, opt, loss = step(
      params,
      opt,
    )
    first = first if first is not None else float(loss)
  assert first == pytest.approx(math.log(7), rel=0.1)
  assert math.exp(float(loss_fn(params))) < 2.0


def test_registered_in_the_sweep_with_the_papers_schedule():
  from benchmarks.batch_scaling import sweep, tasks
  from benchmarks.batch_scaling.train import schedule_values

  task = tasks.get_task("lstm_lm")
  assert task.metric == "perplexity" and task.optimizer_for("legw") == "momentum"
  base = task.baselines["ptb"]
  assert (base.base_batch_size, base.num_epochs, base.batch_sizes[-1]) == (20, 13, 640)
  # PTB (§5.1.2): constant LR for 7 epochs, then halved after each epoch.
  cfg = sweep.SweepConfig(
    task="lstm_lm", dataset="ptb", methods=("legw", "linear"), batch_sizes=(20, 640)
  )
  runs = {(r["method"], r["batch_size"]): r for r in sweep.plan_runs(cfg, train_size=46_400)}
  r = runs[("legw", 20)]
  lrs = schedule_values(sweep._recipe_schedule(r), r["total_steps"])
  spe = r["steps_per_epoch"]
  np.testing.assert_allclose(
    [lrs[e * spe + spe // 2] for e in range(13)],
    [1.0] * 7 + [0.5**i for i in range(1, 7)],
    rtol=1e-5,
  )
  top = runs[("legw", 640)]
  assert top["peak_learning_rate"] == pytest.approx(math.sqrt(32))
  assert top["warmup_epochs"] == pytest.approx(1.0)
  assert runs[("linear", 640)]["peak_learning_rate"] == pytest.approx(32.0)
