"""The sdist and wheel: what they hold, their metadata, and the notebook outside a checkout.

The builds run ``python -m build --no-isolation`` (the ``build`` package and
setuptools >= 77 come with the ``[test]`` extra), a few seconds.
"""

import ast
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser

import pytest

import legw

ROOT = pathlib.Path(__file__).resolve().parent.parent
HARD_DEPENDENCIES = {"jax", "jaxlib", "optax", "numpy"}
# Import name -> distribution name, for the ones that differ.
DISTRIBUTION = {"jax": "jax", "optax": "optax", "numpy": "numpy"}


def _have_build_tools():
  if importlib.util.find_spec("build") is None:
    return False
  import setuptools

  return int(setuptools.__version__.split(".")[0]) >= 77


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
  """(wheel path, sdist path), built once for this module."""
  if not _have_build_tools():
    pytest.skip("needs `build` and setuptools>=77 (pip install -e '.[test]')")
  out = tmp_path_factory.mktemp("dist")
  proc = subprocess.run(
    [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
    capture_output=True,
    text=True,
    check=False,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  (wheel,) = out.glob("*.whl")
  (sdist,) = out.glob("*.tar.gz")
  return wheel, sdist


def _library_files():
  return sorted(p.name for p in (ROOT / "legw").iterdir() if p.suffix == ".py")


def test_wheel_files(dist):
  wheel, _ = dist
  names = zipfile.ZipFile(wheel).namelist()
  print("\n".join(names))  # the file list, with pytest -s
  info = f"legw-{legw.__version__}.dist-info"
  assert f"{info}/licenses/LICENSE" in names
  assert "legw/py.typed" in names
  assert {f"legw/{f}" for f in _library_files()} <= set(names)
  top = {n.split("/")[0] for n in names}
  assert top == {"legw", info}, top  # no tests/, benchmarks/, notebooks/, docs/
  assert f"{info}/entry_points.txt" in names
  entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
  assert "legw = legw.cli:main" in entry_points


def test_wheel_metadata(dist):
  wheel, _ = dist
  text = zipfile.ZipFile(wheel).read(f"legw-{legw.__version__}.dist-info/METADATA").decode()
  meta = Parser().parsestr(text)
  assert meta["Version"] == legw.__version__
  assert meta["License-Expression"] == "Apache-2.0"
  assert meta["License-File"] == "LICENSE"
  assert any(u.startswith("Source, https://") for u in meta.get_all("Project-URL"))
  assert "Typing :: Typed" in meta.get_all("Classifier")
  hard = {
    r.split(">")[0].split("=")[0].split("<")[0].strip()
    for r in meta.get_all("Requires-Dist")
    if "extra ==" not in r
  }
  assert hard == HARD_DEPENDENCIES
  extras = set(meta.get_all("Provides-Extra"))
  assert {"plot", "docs", "test", "examples", "notebooks", "dev"} <= extras


def test_sdist_leaves_tests_out(dist):
  _, sdist = dist
  with tarfile.open(sdist) as tar:
    names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
  for required in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "legw/py.typed"):
    assert required in names, required
  for folder in ("tests/", "benchmarks/", "notebooks/", "docs/"):
    assert not any(n.startswith(folder) for n in names), folder


def test_license_is_apache_2():
  text = (ROOT / "LICENSE").read_text()
  assert "Apache License" in text and "Version 2.0, January 2004" in text
  assert "END OF TERMS AND CONDITIONS" in text


def _third_party_imports():
  found = set()
  for path in (ROOT / "legw").glob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        found |= {a.name.split(".")[0] for a in node.names}
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        found.add(node.module.split(".")[0])
  return {m for m in found if m not in sys.stdlib_module_names and m != "legw"}


def test_hard_dependencies_are_what_legw_imports():
  """jax, optax, numpy (+ jaxlib, which jax needs); matplotlib only behind `--plot`."""
  imported = _third_party_imports()
  assert imported - {"matplotlib"} == set(DISTRIBUTION), imported
  import tomllib

  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  names = {d.split(">")[0].split("=")[0].strip() for d in project["dependencies"]}
  assert names == HARD_DEPENDENCIES
  assert any(d.startswith("matplotlib") for d in project["optional-dependencies"]["plot"])


def test_version_is_single_sourced():
  import tomllib

  pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
  assert "version" not in pyproject["project"]
  assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "legw.__version__"}
  assert f"## [{legw.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_batch_scaling_notebook_outside_a_checkout_stops_at_once(tmp_path):
  """No checkout, no network: the first code cell raises a clear error (not two cells on)."""
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("ipykernel")
  nb = nbformat.read(ROOT / "notebooks" / "batch_scaling.ipynb", as_version=4)
  nb.cells = nb.cells[:3]  # the markdown, the setup cell, the imports
  for cell in nb.cells:
    if cell.cell_type == "code":
      cell.execution_count, cell.outputs = None, []
  fake_bin = tmp_path / "bin"
  fake_bin.mkdir()
  git = fake_bin / "git"  # a git that cannot reach the network
  git.write_text(
    "#!/bin/sh\necho 'fatal: unable to access: Could not resolve host' >&2\nexit 128\n"
  )
  git.chmod(0o755)
  env_path = f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}"
  work = tmp_path / "outside"
  work.mkdir()
  old_path = os.environ["PATH"]
  os.environ["PATH"] = env_path  # the kernel inherits it
  try:
    client = nbclient.NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(work)}})
    with pytest.raises(nbclient.exceptions.CellExecutionError) as err:
      client.execute()
  finally:
    os.environ["PATH"] = old_path
  message = str(err.value)
  assert "needs a checkout of the legw repository" in message
  assert "cloning https://github.com/legw-dev/legw failed" in message
  executed = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count")]
  assert len(executed) == 1, "it must stop at the first code cell"


def test_committed_notebook_is_still_valid_json():
  nb = json.loads((ROOT / "notebooks" / "batch_scaling.ipynb").read_text())
  assert nb["nbformat"] == 4
