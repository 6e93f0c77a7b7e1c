"""The measured-scaling experiment's records: one JSON and CSV per phase, resumable.

A phase's JSON holds the phase, its protocol values, one record per run and a
summary; both files are rewritten after every finished run, and a run already in
the JSON is skipped.
"""

from __future__ import annotations

import csv
import functools
import glob
import hashlib
import json
import os
import platform
from collections.abc import Callable, Sequence
from typing import Any

import jax

from benchmarks import git_commit
from benchmarks.batch_scaling import sweep
from benchmarks.checkpoint import EpochCheckpoint, peek


@functools.cache
def commit_at_start() -> str:
  """The commit checked out when this process first asked: the code it runs (a later
  commit during a long sweep does not change the code already loaded)."""
  return git_commit(short=False)


def environment() -> dict[str, Any]:
  """The machine and software of a run."""
  return dict(
    platform=jax.devices()[0].platform,
    processor=platform.machine(),
    cpu_count=os.cpu_count(),
    cpus_usable=len(os.sched_getaffinity(0)),  # XLA sizes its thread pool by these
    jax_version=jax.__version__,
    git_commit=commit_at_start(),
  )


def run_id(config: dict, seed: int) -> str:
  """What makes two runs the same run: the config and the seed (canonical JSON)."""
  return json.dumps(dict(config, seed=seed), sort_keys=True, default=sweep._jsonable)


def checkpoint_path(out_dir: str, phase: str, rid: str) -> str:
  digest = hashlib.sha1(rid.encode()).hexdigest()[:16]
  return os.path.join(out_dir, "checkpoints", f"{phase}-{digest}.msgpack")


def in_progress(out_dir: str) -> list[str]:
  """One line per run saved part-way in ``out_dir``: its phase, seed and batch, the
  epochs done, the last test accuracy (AdaScale: and its progress), the hours so far."""
  lines = []
  folder = os.path.dirname(checkpoint_path(out_dir, "", ""))
  for path in sorted(glob.glob(os.path.join(folder, "*.msgpack"))):
    saved = peek(path)
    config, logs = json.loads(saved["run_id"]), saved["logs"]
    phase = os.path.basename(path).rsplit("-", 1)[0]
    line = f"{phase}: seed {config['seed']}, batch {config['batch_size']:,}: "
    if "loop" in logs:  # AdaScale: until its progress reaches the base's steps
      epochs = logs["loop"]["epochs"]
      progress = epochs[-1]["progress"] if epochs else 0.0
      line += f"{len(epochs)} epochs, progress {progress:,.0f} of {config['base_steps']:,}"
    else:
      epochs = logs.get("history", [])
      line += f"{len(epochs)} of {config['num_epochs']} epochs"
    if epochs:
      line += f", test accuracy {100 * epochs[-1]['test_accuracy']:.1f}%"
    lines.append(f"{line}; {saved['spent']['wall_seconds'] / 3600:.1f} h so far")
  return lines


def phase_path(out_dir: str, phase: str) -> str:
  return os.path.join(out_dir, f"{phase}.json")


def load_phase(out_dir: str, phase: str) -> dict[str, Any]:
  """A phase's JSON (an empty one when there is none yet)."""
  path = phase_path(out_dir, phase)
  if not os.path.exists(path):
    return dict(phase=phase, runs=[], summary={})
  with open(path) as f:
    return json.load(f)


CSV_FIELDS = (
  "phase", "label", "seed", "optimizer", "batch_size", "learning_rate", "final_accuracy",
  "accuracy_split", "steps", "examples", "epochs_run", "wall_seconds", "cpu_seconds", "quick",
)  # fmt: skip


def write_phase(out_dir: str, doc: dict[str, Any]) -> str:
  """Writes ``<phase>.json`` (atomically) and ``<phase>.csv`` (one row per run)."""
  path = phase_path(out_dir, doc["phase"])
  sweep._write_json(path, doc)
  tmp = f"{path[:-5]}.csv.tmp{os.getpid()}"
  with open(tmp, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in doc["runs"]:
      c = r["config"]
      w.writerow(
        dict(
          r,
          phase=doc["phase"],
          optimizer=c.get("optimizer"),
          batch_size=c.get("batch_size"),
          learning_rate=c.get("peak_learning_rate", c.get("learning_rate")),
          quick=c.get("quick", False),
        )
      )
  os.replace(tmp, path[:-5] + ".csv")
  return path


def execute_runs(
  out_dir: str,
  phase: str,
  planned: Sequence[tuple[str, dict, int]],
  train_fn: Callable[[dict, int, EpochCheckpoint], dict],
  summarize: Callable[[list[dict]], dict] | None = None,
  protocol_values: dict | None = None,
  progress: bool = True,
) -> dict[str, Any]:
  """Trains each planned ``(label, config, seed)`` not yet in the phase's JSON.

  ``train_fn(config, seed, checkpoint)`` returns what the run measured (``epochs``:
  per-epoch dicts; ``steps``, ``examples``, ``epochs_run``, ``final_accuracy``, any
  extras); it may save its loop to ``checkpoint`` after every epoch and resume from
  it (``<out_dir>/checkpoints/``, ignored by git; removed once the record is written).
  After each run the JSON and CSV are rewritten, with ``summarize(records)``.
  """
  from tqdm.auto import tqdm

  doc = load_phase(out_dir, phase)
  doc["protocol"] = protocol_values or {}
  done = {r["run_id"] for r in doc["runs"]}
  todo = [(lab, c, s) for lab, c, s in planned if run_id(c, s) not in done]
  if len(todo) < len(planned):
    print(f"{phase}: {len(planned) - len(todo)} of {len(planned)} runs already done", flush=True)
  bar = tqdm(total=len(todo), unit="run", desc=phase, disable=not progress, position=0)
  for label, config, seed in todo:
    bar.set_postfix_str(f"{label} seed={seed}")
    rid = run_id(config, seed)
    checkpoint = EpochCheckpoint(checkpoint_path(out_dir, phase, rid), rid)
    if checkpoint.resumed:  # where each earlier process stopped, and on what machine
      print(f"{phase}: {label} seed={seed} resumes from {checkpoint.path}", flush=True)
      resume = dict(checkpoint.spent(), environment=environment())
      checkpoint.logs.setdefault("resumes", []).append(resume)
    out = train_fn(config, seed, checkpoint)
    spent = {k: round(v, 2) for k, v in checkpoint.spent().items()}  # CPU: all threads
    doc["runs"].append(
      dict(
        run_id=rid, label=label, seed=seed, config=config, **out, **spent,
        resumed=checkpoint.resumed, resumes=checkpoint.logs.get("resumes", []),
        environment=environment(),
      )
    )  # fmt: skip
    doc["summary"] = summarize(doc["runs"]) if summarize else {}
    write_phase(out_dir, doc)
    checkpoint.remove()
    bar.update(1)
  bar.close()
  if not todo and summarize:  # a finished phase: the summary as the current code states it
    doc["summary"] = summarize(doc["runs"])
    write_phase(out_dir, doc)
  return doc
