"""The command line of :mod:`benchmarks.multihost.checks` (its docstring says how to run it)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from benchmarks.multihost import checks
from benchmarks.multihost.checks import (
  initialize,
  launch_local,
  run_checks,
)


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(
    prog="python -m benchmarks.multihost",
    description=checks.__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument(
    "--local-processes",
    type=int,
    default=None,
    metavar="N",
    help="spawn N processes on 127.0.0.1 (CPU devices) and wait for them",
  )
  p.add_argument(
    "--devices-per-process",
    type=int,
    default=4,
    help="CPU devices per spawned process (default: 4)",
  )
  p.add_argument("--coordinator", default=None, help="host:port of process 0 (default: detect)")
  p.add_argument("--num-processes", type=int, default=None)
  p.add_argument("--process-id", type=int, default=None)
  p.add_argument("--cpu", action="store_true", help="CPU devices: gloo collectives")
  p.add_argument("--timeout", type=float, default=600.0, help="seconds (with --local-processes)")
  p.add_argument("--json", default=None, help="process 0 writes the results here")
  args = p.parse_args(argv)
  if args.local_processes:
    return launch_local(args.local_processes, args.devices_per_process, args.json, args.timeout)
  initialize(args.coordinator, args.num_processes, args.process_id, cpu=args.cpu)
  import jax

  result = run_checks()
  if jax.process_index() == 0:
    for r in result["checks"]:
      what = (
        r.get("optimizer", "") + " " + r.get("layout", "")
        if r["check"] == "optimizers"
        else f"{r['steps']} data-parallel steps, batch {r['batch_size']}"
      )
      print(
        f"{r['check']:>10} {what:<32} max rel error {r['max_rel_error']:.2e} "
        f"{'ok' if r['ok'] else 'MISMATCH'}"
      )
    print(
      f"{result['process_count']} processes, {result['device_count']} devices "
      f"({result['backend']}): {'all equal' if result['ok'] else 'MISMATCH'} "
      f"in {result['seconds']:.1f} s"
    )
    if args.json:
      with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
  jax.distributed.shutdown()
  return 0 if result["ok"] else 1


if __name__ == "__main__":
  sys.exit(main())
