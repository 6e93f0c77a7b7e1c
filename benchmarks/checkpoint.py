"""An epoch loop's state on disk, so a run of hours survives its process.

After every finished epoch a training loop saves its train state (any pytree;
``flax.serialization``), its NumPy data-order generator and its logs; a later
process that builds the same run resumes after that epoch and continues
bit for bit where the first left off (the same code on the same machine). One
file per run, written atomically; it is removed once the run's record is
written. The wall and CPU seconds spent before a resume are kept in it, so a
resumed run reports its whole cost.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
from flax import serialization


def peek(path: str, with_state: bool = False) -> dict[str, Any]:
  """A saved run's ``run_id``, ``logs`` and seconds ``spent`` (and its raw ``state``)."""
  with open(path, "rb") as f:
    saved = serialization.msgpack_restore(f.read())
  out = dict(
    run_id=saved["run_id"], logs=json.loads(saved["logs"]), spent=json.loads(saved["spent"])
  )
  if with_state:
    out["state"] = saved["state"]
  return out


class EpochCheckpoint:
  """The last finished epoch of one run, in ``path``.

  ``logs`` is a dict the loop keeps its JSON-serializable logs in (read from
  the file when one exists); ``resumed`` says whether it did.
  """

  def __init__(self, path: str, run_id: str):
    self.path, self.run_id = path, run_id
    self.logs: dict[str, Any] = {}
    self._state: dict | None = None
    self._t0, self._cpu0 = time.perf_counter(), time.process_time()
    self._spent = dict(wall_seconds=0.0, cpu_seconds=0.0)
    if os.path.exists(path):
      saved = peek(path, with_state=True)
      if saved["run_id"] != run_id:
        raise ValueError(f"{path} holds another run: {saved['run_id']!r}, not {run_id!r}.")
      self.logs, self._spent, self._state = saved["logs"], saved["spent"], saved["state"]

  @property
  def resumed(self) -> bool:
    return self._state is not None

  def restore(self, target, rng: np.random.Generator):
    """The saved train state, shaped like ``target``; sets ``rng`` to its saved state."""
    if self._state is None:
      return target
    restored = serialization.from_state_dict(target, self._state)
    rng.bit_generator.state = self.logs["rng"]
    return jax.tree.map(lambda t, r: jax.numpy.asarray(r, dtype=t.dtype), target, restored)

  def save(self, state, rng: np.random.Generator) -> None:
    """Writes ``state``, ``rng``'s state and ``logs`` (atomically)."""
    self.logs["rng"] = rng.bit_generator.state
    blob = serialization.msgpack_serialize(
      dict(
        run_id=self.run_id,
        logs=json.dumps(self.logs),
        spent=json.dumps(self.spent()),
        state=serialization.to_state_dict(jax.device_get(state)),
      )
    )
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    tmp = f"{self.path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
      f.write(blob)
    os.replace(tmp, self.path)

  def spent(self) -> dict[str, float]:
    """Wall and CPU seconds of the run so far, this process's and the earlier ones'."""
    return dict(
      wall_seconds=self._spent["wall_seconds"] + time.perf_counter() - self._t0,
      cpu_seconds=self._spent["cpu_seconds"] + time.process_time() - self._cpu0,
    )

  def remove(self) -> None:
    if os.path.exists(self.path):
      os.remove(self.path)
