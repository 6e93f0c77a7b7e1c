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


class Bottleneck(nn.Module):
  """ResNet v1.5 bottleneck: 1x1, 3x3 (strided), 1x1 (4x wide), and a projection
  shortcut where the shape changes."""

  width: int
  strides: int = 1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = lambda f, k, s, name: nn.Conv(
      f, (k, k), (s, s), use_bias=False, dtype=self.dtype, name=name
    )
    norm = lambda name, **kw: nn.BatchNorm(
      use_running_average=not train, momentum=0.9, dtype=self.dtype, name=name, **kw
    )
    y = nn.relu(norm("bn1")(conv(self.width, 1, 1, "conv1")(x)))
    y = nn.relu(norm("bn2")(conv(self.width, 3, self.strides, "conv2")(y)))
    y = norm("bn3", scale_init=nn.initializers.zeros)(conv(4 * self.width, 1, 1, "conv3")(y))
    if x.shape[-1] != 4 * self.width or self.strides != 1:
      x = norm("proj_bn")(conv(4 * self.width, 1, self.strides, "proj")(x))
    return nn.relu(x + y)


class ResNet50(nn.Module):
  """ResNet-50 v1.5 for 224x224 RGB images (25.6 M parameters), computing in ``dtype``
  (bfloat16 on TPU) with float32 parameters. For compile-only cost estimates
  (``benchmarks/costs/tpu_cost.py``); not trained here."""

  num_classes: int = 1000
  dtype: jnp.dtype = jnp.bfloat16

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.Conv(64, (7, 7), (2, 2), use_bias=False, dtype=self.dtype, name="stem")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype, name="stem_bn")(
      x
    )
    x = nn.max_pool(nn.relu(x), (3, 3), (2, 2), padding="SAME")
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
      for b in range(blocks):
        strides = 2 if stage > 0 and b == 0 else 1
        x = Bottleneck(width, strides, self.dtype, name=f"stage{stage}_block{b}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


class EncoderLayer(nn.Module):
  """A post-norm transformer encoder layer (BERT): attention, then a GELU MLP."""

  hidden: int
  heads: int
  mlp: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.MultiHeadDotProductAttention(self.heads, dtype=self.dtype, name="attention")(x)
    x = nn.LayerNorm(dtype=self.dtype, name="ln1")(x + y)
    y = nn.Dense(self.mlp, dtype=self.dtype, name="mlp_in")(x)
    y = nn.Dense(self.hidden, dtype=self.dtype, name="mlp_out")(nn.gelu(y))
    return nn.LayerNorm(dtype=self.dtype, name="ln2")(x + y)


class EncoderLM(nn.Module):
  """A BERT-shaped masked-LM body (default BERT-base: 12 layers, hidden 768, 12 heads,
  MLP 3072, vocabulary 30,522, 110 M parameters; BERT-Large: 24, 1024, 16, 4096),
  computing in ``dtype`` with float32 parameters; the output layer shares the token
  embedding. For compile-only cost estimates (``benchmarks/costs/tpu_cost.py``)."""

  layers: int = 12
  hidden: int = 768
  heads: int = 12
  mlp: int = 3072
  vocab: int = 30522
  max_len: int = 512
  dtype: jnp.dtype = jnp.bfloat16

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    embed = nn.Embed(self.vocab, self.hidden, name="token_embed")
    x = embed(tokens) + nn.Embed(self.max_len, self.hidden, name="position_embed")(
      jnp.arange(tokens.shape[1])
    )
    x = nn.LayerNorm(dtype=self.dtype, name="embed_ln")(x).astype(self.dtype)
    for i in range(self.layers):
      x = EncoderLayer(self.hidden, self.heads, self.mlp, self.dtype, name=f"layer{i}")(x)
    return embed.attend(x.astype(jnp.float32))
