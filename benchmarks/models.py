"""Flax (Linen) models for the batch-scaling benchmarks.

* :class:`MnistLSTM` — the LEGW paper's MNIST model (§5.1.1): each 28x28 image
  is 28 steps of 28 inputs; a 128-unit linear input transform ("a 128-by-28
  transform layer"); one LSTM layer with 128 hidden units, whose cell kernel is
  a single 256-by-512 matrix as in the paper (TensorFlow ``BasicLSTMCell``
  layout: gates i, j, f, o; forget bias 1); a 10-way softmax on the last
  hidden state.
* :class:`SmallResNet` — a small ResNet-style CNN with batch norm (a 3x3 stem,
  one basic residual block per stage at widths 16/32/64, global average
  pooling, a dense classifier), for the LARS + LEGW task.

Every model is called as ``model.apply(variables, x, train=bool)`` with ``x``
of shape (batch, 28, 28) and returns logits of shape (batch, num_classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class LSTM(nn.Module):
  """One LSTM layer over a (batch, time, features) sequence.

  Parameters: ``kernel`` of shape (features + hidden, 4 * hidden) and ``bias``
  (4 * hidden,), gates in the order i, j, f, o (TensorFlow ``BasicLSTMCell``):
  ``c' = sigmoid(f + forget_bias) * c + sigmoid(i) * tanh(j)``,
  ``h' = sigmoid(o) * tanh(c')``. The input half of the kernel is applied to
  all time steps in one matmul before the recurrence (``lax.scan``).

  Returns:
    the hidden states, shape (batch, time, hidden).
  """

  hidden: int = 128
  forget_bias: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    batch, _, features = x.shape
    h_dim = self.hidden
    kernel = self.param("kernel", nn.initializers.glorot_uniform(), (features + h_dim, 4 * h_dim))
    bias = self.param("bias", nn.initializers.zeros_init(), (4 * h_dim,))
    w_x, w_h = kernel[:features], kernel[features:]
    x_proj = jnp.einsum("btf,fg->tbg", x, w_x) + bias  # time-major

    def step(carry, xp):
      c, h = carry
      i, j, f, o = jnp.split(xp + h @ w_h, 4, axis=-1)
      c = nn.sigmoid(f + self.forget_bias) * c + nn.sigmoid(i) * jnp.tanh(j)
      h = nn.sigmoid(o) * jnp.tanh(c)
      return (c, h), h

    zeros = jnp.zeros((batch, h_dim), x.dtype)
    _, hs = jax.lax.scan(step, (zeros, zeros), x_proj)
    return jnp.swapaxes(hs, 0, 1)


class MnistLSTM(nn.Module):
  """The LEGW paper's pure-LSTM MNIST classifier (§5.1.1)."""

  transform: int = 128
  hidden: int = 128
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout / batch norm
    x = nn.Dense(self.transform, name="transform")(x)  # (B, 28, 128): 28 steps
    hs = LSTM(self.hidden, name="lstm")(x)
    return nn.Dense(self.num_classes, name="classifier")(hs[:, -1])


class ResidualBlock(nn.Module):
  """A basic ResNet block: two 3x3 convolutions with batch norm, and a shortcut."""

  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)
    y = nn.Conv(self.features, (3, 3), (self.strides, self.strides), use_bias=False, name="conv1")(
      x
    )
    y = nn.relu(norm("bn1")(y))
    y = nn.Conv(self.features, (3, 3), use_bias=False, name="conv2")(y)
    y = norm("bn2")(y)
    if x.shape[-1] != self.features or self.strides != 1:
      x = nn.Conv(self.features, (1, 1), (self.strides, self.strides), use_bias=False, name="proj")(
        x
      )
      x = norm("proj_bn")(x)
    return nn.relu(x + y)


class SmallResNet(nn.Module):
  """A small ResNet-style CNN with batch norm for 28x28 grey images."""

  widths: Sequence[int] = (16, 32, 64)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = x[..., None]  # (B, 28, 28, 1)
    x = nn.Conv(self.widths[0], (3, 3), use_bias=False, name="stem")(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, name="stem_bn")(x))
    for i, w in enumerate(self.widths):
      x = ResidualBlock(w, strides=1 if i == 0 else 2, name=f"block{i}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="classifier")(x)
