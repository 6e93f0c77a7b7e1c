"""The committed notebooks: well formed, Colab-ready, and saved from one clean run.

Executing them is CI's separate step (``pytest --nbmake notebooks/``); these
checks read the JSON only, so they are instant and need no Jupyter packages.
"""

import json
import pathlib

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = {"quickstart.ipynb", "schedules.ipynb", "batch_scaling.ipynb"}


def _load(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _source(cell):
  src = cell["source"]
  return "".join(src) if isinstance(src, list) else src


def test_all_notebooks_present():
  assert EXPECTED <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_colab_ready(path):
  nb = _load(path)
  assert nb["nbformat"] == 4
  assert nb["metadata"]["kernelspec"]["name"] == "python3"
  cells = nb["cells"]
  assert "colab.research.google.com/github/" in _source(cells[0])
  assert path.name in _source(cells[0]), "the Colab badge must open this notebook"
  install = _source(cells[1])
  assert cells[1]["cell_type"] == "code" and "LEGW_REPO" in install
  assert "%pip install" in install and "find_spec" in install, "install only when missing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_from_one_clean_run(path):
  """Either stripped, or every code cell run once, top to bottom, with no error."""
  code = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
  counts = [c.get("execution_count") for c in code]
  if all(n is None for n in counts) and not any(c.get("outputs") for c in code):
    return  # outputs stripped
  assert counts == list(range(1, len(code) + 1)), (
    f"{path.name} was not executed top to bottom in one session (execution counts "
    f"{counts}); re-run it, e.g. pytest --nbmake --overwrite {path.name}"
  )
  for c in code:
    for out in c.get("outputs", []):
      assert out["output_type"] != "error", f"{path.name} was saved with an error"
      assert not (out["output_type"] == "stream" and out["name"] == "stderr"), (
        f"{path.name} was saved with stderr output: {''.join(out['text'])[:200]}"
      )
