"""benchmarks.models: the paper's MNIST LSTM and the small ResNet."""

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.models import LSTM, MnistLSTM, SmallResNet


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_mnist_lstm_shapes_match_the_paper():
  model = MnistLSTM()
  x = jnp.zeros((3, 28, 28))
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
  shapes = jax.tree.map(lambda p: p.shape, params)
  # §5.1.1: a 128-by-28 transform, LSTM hidden 128 with a 256-by-512 cell
  # kernel, and a 10-way softmax.
  assert shapes == {
    "transform": {"kernel": (28, 128), "bias": (128,)},
    "lstm": {"kernel": (256, 512), "bias": (512,)},
    "classifier": {"kernel": (128, 10), "bias": (10,)},
  }
  assert jax.eval_shape(model.apply, {"params": params}, x).shape == (3, 10)


def test_lstm_matches_a_step_by_step_reference():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 3)).astype(np.float32)
  layer = LSTM(hidden=4)
  params = {
    "kernel": jnp.asarray(rng.normal(size=(7, 16)), jnp.float32) * 0.5,
    "bias": jnp.asarray(rng.normal(size=(16,)), jnp.float32) * 0.1,
  }
  out = np.asarray(jax.jit(layer.apply)({"params": params}, x))
  kernel, bias = np.asarray(params["kernel"]), np.asarray(params["bias"])
  c = h = np.zeros((2, 4))
  for t in range(5):  # TensorFlow BasicLSTMCell, gates i, j, f, o; forget bias 1
    z = np.concatenate([x[:, t], h], axis=1) @ kernel + bias
    i, j, f, o = np.split(z, 4, axis=1)
    c = _sigmoid(f + 1.0) * c + _sigmoid(i) * np.tanh(j)
    h = _sigmoid(o) * np.tanh(c)
    np.testing.assert_allclose(out[:, t], h, rtol=1e-5, atol=1e-5)


def test_small_resnet_shapes():
  model = SmallResNet()
  x = jnp.zeros((4, 28, 28))
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  assert set(variables) == {"params", "batch_stats"}
  params = variables["params"]
  assert params["stem"]["kernel"].shape == (3, 3, 1, 16)
  assert params["block1"]["conv1"]["kernel"].shape == (3, 3, 16, 32)
  assert params["block2"]["proj"]["kernel"].shape == (1, 1, 32, 64)
  assert params["classifier"]["kernel"].shape == (64, 10)
  assert jax.eval_shape(model.apply, variables, x).shape == (4, 10)


def test_small_resnet_batch_norm_updates_in_training():
  model = SmallResNet(widths=(4, 8))
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 28, 28)), jnp.float32)

  @jax.jit
  def init_and_train(rng, x):
    variables = model.init(rng, x)
    return variables, model.apply(variables, x, train=True, mutable=["batch_stats"])

  variables, (logits, updated) = init_and_train(jax.random.key(0, impl="rbg"), x)
  assert logits.shape == (4, 10) and np.isfinite(logits).all()
  before = variables["batch_stats"]["stem_bn"]["mean"]
  assert not np.allclose(updated["batch_stats"]["stem_bn"]["mean"], before)
