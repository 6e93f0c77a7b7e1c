"""jit-compiled training and evaluation for the benchmarks.

One epoch is one compiled call: the whole training set lives on the device,
the host sends only a permutation of the example indices (steps, batch) and the
learning rate of each step (steps,), and a ``lax.scan`` runs every optimizer
step of the epoch, gathering its batch on the device. So the input pipeline
cannot starve the step; :func:`pipeline_check` measures it against a step fed
one resident batch with no gather at all.

The learning rate enters as an ``optax.inject_hyperparams`` hyperparameter set
before every step from the precomputed schedule, so one compiled epoch serves
every method (legw, linear, none) at a batch size.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import legw
from benchmarks.checkpoint import EpochCheckpoint

OPTIMIZERS = ("momentum", "nesterov", "lars", "adam", "lamb")


def make_optimizer(
  name: str, momentum: float = 0.9, weight_decay: float = 0.0, **kwargs
) -> optax.GradientTransformation:
  """An optimizer whose learning rate is an injected hyperparameter.

  Args:
    name: ``"momentum"`` (``optax.sgd`` with momentum, TensorFlow's
      ``MomentumOptimizer`` form; weight decay, if any, on kernels only),
      ``"nesterov"`` (the same with Nesterov momentum, ``nesterov=True``),
      ``"lars"`` (:func:`legw.lars`), ``"adam"`` (``optax.adam``) or
      ``"lamb"`` (:func:`legw.lamb`: biases and norms excluded from the trust
      ratio and the decay).
    momentum: momentum of ``momentum`` and ``lars``.
    weight_decay: weight decay (``momentum``, ``lars``, ``lamb``).
    **kwargs: passed to :func:`legw.lars` (e.g. ``trust_coefficient``).

  Returns:
    ``optax.inject_hyperparams`` of the optimizer: set
    ``state.hyperparams["learning_rate"]`` before each update.
  """
  if name in ("momentum", "nesterov"):

    def build(learning_rate):
      sgd = optax.sgd(learning_rate, momentum=momentum, nesterov=name == "nesterov")
      if not weight_decay:
        return sgd
      return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=legw.exclude_bias_and_norm), sgd
      )
  elif name == "lars":

    def build(learning_rate):
      return legw.lars(learning_rate, momentum=momentum, weight_decay=weight_decay, **kwargs)
  elif name == "adam":

    def build(learning_rate):
      return optax.adam(learning_rate)
  elif name == "lamb":

    def build(learning_rate):
      return legw.lamb(learning_rate, weight_decay=weight_decay)
  else:
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")
  return optax.inject_hyperparams(build)(learning_rate=0.0)


class TrainState(NamedTuple):
  params: Any
  batch_stats: Any
  opt_state: Any


def init_key(seed: int) -> jax.Array:
  """The PRNG key of a run's initialisation.

  An ``rbg`` key: XLA compiles its initializers several times faster than the
  default threefry ones (a small ResNet's ``init``: ~3 s of CPU, not ~12 s).
  """
  return jax.random.key(seed, impl="rbg")


def softmax_xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example cross-entropy (labels are integer class ids)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


@dataclasses.dataclass
class RunResult:
  """What one training run measured."""

  test_accuracy: float
  test_loss: float
  train_loss: float
  train_loss_per_epoch: list[float]
  diverged: bool
  epochs_run: int
  steps: int
  wall_seconds: float
  compile_seconds: float
  samples_per_second: float


def _variables(params, batch_stats):
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


@functools.partial(jax.jit, static_argnums=(0,))
def _init_variables(model, rng, x_sample):
  variables = model.init(rng, x_sample, train=False)
  return variables["params"], variables.get("batch_stats", {})


@functools.partial(jax.jit, static_argnums=(0, 1))
def _eval_chunk(model, loss_fn, params, batch_stats, xb, yb, mb):
  """Summed loss, correct predictions and count of one padded chunk."""
  logits = model.apply(_variables(params, batch_stats), xb, train=False)
  loss = loss_fn(logits, yb)
  correct = (jnp.argmax(logits, -1) == yb).astype(jnp.float32)
  mb = jnp.broadcast_to(mb.reshape(mb.shape + (1,) * (loss.ndim - 1)), loss.shape)
  return jnp.sum(jnp.where(mb, loss, 0.0)), jnp.sum(correct * mb), jnp.sum(mb)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _evaluate(model, loss_fn, params, batch_stats, xs, ys, mask):
  """Mean loss and accuracy over padded chunks (compiled once per model and shape)."""
  loss, correct, count = jax.lax.map(
    lambda a: _eval_chunk(model, loss_fn, params, batch_stats, *a), (xs, ys, mask)
  )
  return loss.sum() / count.sum(), correct.sum() / count.sum()


class Trainer:
  """Compiled training and evaluation of one model with one optimizer.

  Compiled functions are cached per batch shape, so a trainer is reused across
  the runs of a sweep (every method and seed at a batch size shares one).

  ``scan_epoch=True`` compiles a whole epoch as one ``lax.scan`` (no per-step
  dispatch; best for the LSTMs). ``scan_epoch=False`` runs a Python loop over
  one compiled step (the batch still gathered on the device): on XLA:CPU,
  convolutions inside a ``while`` loop run ~8x slower than outside one, so the
  CNN uses the loop, where the ~0.1 ms dispatch per step is negligible.
  """

  def __init__(
    self,
    model,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable = softmax_xent,
    scan_epoch: bool = True,
  ):
    self.model = model
    self.tx = optimizer
    self.loss_fn = loss_fn
    self.scan_epoch = scan_epoch
    self._compiled: dict = {}
    self._epoch = jax.jit(self._epoch_impl, donate_argnums=(0,))
    self._fixed = jax.jit(self._fixed_impl, donate_argnums=(0,))
    self._gather_step = jax.jit(self._gather_step_impl, donate_argnums=(0,))
    self._plain_step = jax.jit(self._step, donate_argnums=(0,))
    self._opt_init = jax.jit(self.tx.init)

  # -- pure functions -------------------------------------------------------
  def init(self, rng: jax.Array, x_sample: jax.Array) -> TrainState:
    """Fresh parameters, batch statistics and optimizer state (jit-compiled)."""
    params, batch_stats = _init_variables(self.model, rng, x_sample)
    return TrainState(params, batch_stats, self._opt_init(params))

  def _step(self, state: TrainState, xb, yb, lr):
    params, batch_stats, opt_state = state

    def loss_of(p):
      if batch_stats:
        logits, updated = self.model.apply(
          _variables(p, batch_stats), xb, train=True, mutable=["batch_stats"]
        )
        new_stats = updated["batch_stats"]
      else:
        logits = self.model.apply(_variables(p, batch_stats), xb, train=True)
        new_stats = batch_stats
      return self.loss_fn(logits, yb).mean(), new_stats

    (loss, new_stats), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    hyper = dict(opt_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lr, hyper["learning_rate"].dtype)
    opt_state = opt_state._replace(hyperparams=hyper)
    updates, opt_state = self.tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return TrainState(params, new_stats, opt_state), loss

  def _epoch_impl(self, state, x, y, perm, lrs):
    def body(s, inp):
      idx, lr = inp
      return self._step(s, x[idx], y[idx], lr)

    return jax.lax.scan(body, state, (perm, lrs))

  def _fixed_impl(self, state, xb, yb, lrs):
    return jax.lax.scan(lambda s, lr: self._step(s, xb, yb, lr), state, lrs)

  def _gather_step_impl(self, state, x, y, idx, lr):
    return self._step(state, x[idx], y[idx], lr)

  # -- compiled entry points -----------------------------------------------
  def _key(self, x, y, steps, batch_size):
    if self.scan_epoch:
      return ("epoch", steps, batch_size, x.shape, y.shape)
    return ("step", batch_size, x.shape, y.shape)

  def compile_epoch(self, state, x, y, steps: int, batch_size: int) -> float:
    """AOT-compiles an epoch (or, in loop mode, a step) at ``batch_size``; returns seconds."""
    key = self._key(x, y, steps, batch_size)
    if key in self._compiled:
      return 0.0
    t0 = time.perf_counter()
    if self.scan_epoch:
      perm = jax.ShapeDtypeStruct((steps, batch_size), jnp.int32)
      lrs = jax.ShapeDtypeStruct((steps,), jnp.float32)
      self._compiled[key] = self._epoch.lower(state, x, y, perm, lrs).compile()
    else:
      idx = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
      lr = jax.ShapeDtypeStruct((), jnp.float32)
      self._compiled[key] = self._gather_step.lower(state, x, y, idx, lr).compile()
    return time.perf_counter() - t0

  def run_epoch(self, state, x, y, perm: np.ndarray, lrs: np.ndarray):
    """One epoch: ``perm`` (steps, batch) example indices, ``lrs`` (steps,).

    Returns the new state and the loss of every step, (steps,).
    """
    steps, batch_size = perm.shape
    self.compile_epoch(state, x, y, steps, batch_size)
    fn = self._compiled[self._key(x, y, steps, batch_size)]
    perm = np.asarray(perm, np.int32)
    lrs = np.asarray(lrs, np.float32)
    if self.scan_epoch:
      return fn(state, x, y, jnp.asarray(perm), jnp.asarray(lrs))
    losses = []
    for i in range(steps):
      state, loss = fn(state, x, y, perm[i], lrs[i])
      losses.append(loss)
    return state, jnp.stack(losses)

  def run_resident(self, state, xb, yb, lrs: np.ndarray):
    """``len(lrs)`` steps on one batch already on the device (no gather)."""
    if self.scan_epoch:
      return self._fixed(state, xb, yb, jnp.asarray(lrs, jnp.float32))
    losses = []
    for lr in np.asarray(lrs, np.float32):
      state, loss = self._plain_step(state, xb, yb, lr)
      losses.append(loss)
    return state, jnp.stack(losses)

  def evaluate(self, state: TrainState, eval_data) -> tuple[float, float]:
    """Mean loss and accuracy over ``eval_data`` (from :func:`prepare_eval`)."""
    args = (self.model, self.loss_fn, state.params, state.batch_stats)
    if self.scan_epoch:
      loss, acc = _evaluate(*args, *eval_data)
      return float(loss), float(acc)
    sums = [_eval_chunk(*args, *chunk) for chunk in zip(*eval_data)]
    loss, correct, count = (sum(float(v[i]) for v in sums) for i in range(3))
    return loss / count, correct / count


def prepare_eval(x: np.ndarray, y: np.ndarray, chunk: int = 500):
  """Pads and reshapes a test set to (chunks, chunk, ...) arrays and a mask."""
  n = len(x)
  chunks = max(1, math.ceil(n / chunk))
  pad = chunks * chunk - n
  mask = np.concatenate([np.ones(n, bool), np.zeros(pad, bool)])
  xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
  yp = np.concatenate([y, np.zeros((pad,) + y.shape[1:], y.dtype)])
  return (
    jnp.asarray(xp.reshape((chunks, chunk) + x.shape[1:])),
    jnp.asarray(yp.reshape((chunks, chunk) + y.shape[1:])),
    jnp.asarray(mask.reshape(chunks, chunk)),
  )


def schedule_values(schedule: Callable, total_steps: int) -> np.ndarray:
  """The learning rate of every step 0 .. total_steps - 1, as float32."""
  return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(total_steps)), np.float32)


def train_run(
  trainer: Trainer,
  x_train,
  y_train,
  eval_data,
  *,
  batch_size: int,
  learning_rates: np.ndarray,
  num_epochs: int,
  seed: int = 0,
  on_epoch: Callable[[int, float], None] | None = None,
  checkpoint: EpochCheckpoint | None = None,
) -> RunResult:
  """Trains from a fresh seeded initialisation and evaluates once at the end.

  Args:
    trainer: a :class:`Trainer` (model + optimizer).
    x_train, y_train: device arrays of the whole training set.
    eval_data: the test set from :func:`prepare_eval`.
    batch_size: examples per step; an epoch is ``len(x_train) // batch_size``
      steps over a fresh permutation (the remainder is dropped).
    learning_rates: the LR of every step, ``num_epochs * steps_per_epoch``.
    num_epochs: whole epochs to run.
    seed: seeds the initialisation and the data order (the same for every
      method at a given batch size and seed).
    on_epoch: called after each epoch with (epoch index, mean train loss).
    checkpoint: where to save the loop after every epoch, and to resume from
      when it holds earlier epochs of this run (``benchmarks.checkpoint``).

  Training stops after the first epoch whose loss is not finite (diverged);
  the test metrics are then those of the diverged parameters.
  """
  n = len(x_train)
  steps = n // batch_size
  if steps < 1:
    raise ValueError(f"batch_size={batch_size} is larger than the training set ({n}).")
  if len(learning_rates) != steps * num_epochs:
    raise ValueError(f"need {steps * num_epochs} learning rates, got {len(learning_rates)}.")
  t_start = time.perf_counter()
  state = trainer.init(init_key(seed), x_train[:1])
  compile_s = trainer.compile_epoch(state, x_train, y_train, steps, batch_size)
  rng = np.random.default_rng(seed)
  losses, train_s = [], 0.0
  if checkpoint is not None:
    state = checkpoint.restore(state, rng)
    losses = checkpoint.logs.setdefault("losses", losses)
  first = len(losses)
  diverged = bool(losses) and not math.isfinite(losses[-1])  # saved as it diverged
  for epoch in range(num_epochs if diverged else first, num_epochs):
    perm = rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size)
    lrs = learning_rates[epoch * steps : (epoch + 1) * steps]
    t0 = time.perf_counter()
    state, step_losses = trainer.run_epoch(state, x_train, y_train, perm, lrs)
    mean_loss = float(jnp.mean(step_losses))  # blocks until the epoch is done
    train_s += time.perf_counter() - t0
    losses.append(mean_loss)
    if on_epoch is not None:
      on_epoch(epoch, mean_loss)
    if checkpoint is not None:
      checkpoint.save(state, rng)
    if not math.isfinite(mean_loss):
      diverged = True
      break
  test_loss, test_acc = trainer.evaluate(state, eval_data)
  wall = time.perf_counter() - t_start
  return RunResult(
    test_accuracy=test_acc,
    test_loss=test_loss,
    train_loss=losses[-1],
    train_loss_per_epoch=losses,
    diverged=diverged,
    epochs_run=len(losses),
    steps=steps * len(losses),
    wall_seconds=wall,
    compile_seconds=compile_s,
    samples_per_second=steps * batch_size * (len(losses) - first) / train_s
    if train_s
    else math.nan,
  )


def pipeline_check(
  trainer: Trainer,
  x_train,
  y_train,
  *,
  batch_size: int,
  steps: int | None = None,
  repeats: int = 3,
  seed: int = 0,
) -> dict:
  """Does the input pipeline starve the step? Samples/s fed two ways.

  ``epoch``: the real path (a fresh permutation from the host, the batch
  gathered on the device inside the scan). ``resident``: the same compiled
  step on one batch already on the device, with no indexing at all (an upper
  bound for the step alone). A ratio near 1 means the pipeline costs nothing.
  """
  n = len(x_train)
  steps = steps or n // batch_size
  state = trainer.init(init_key(seed), x_train[:1])
  lrs = np.full((steps,), 1e-4, np.float32)
  rng = np.random.default_rng(seed)
  xb, yb = x_train[:batch_size], y_train[:batch_size]

  def best(fn):
    nonlocal state
    state, out = fn(state)  # compile + warm up
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      state, out = fn(state)
      jax.block_until_ready(out)
      times.append(time.perf_counter() - t0)
    return steps * batch_size / min(times)

  epoch = best(
    lambda s: trainer.run_epoch(
      s, x_train, y_train, rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size), lrs
    )
  )
  resident = best(lambda s: trainer.run_resident(s, xb, yb, lrs))
  return {
    "batch_size": batch_size,
    "steps": steps,
    "epoch_samples_per_second": epoch,
    "resident_samples_per_second": resident,
    "ratio": epoch / resident,
  }
