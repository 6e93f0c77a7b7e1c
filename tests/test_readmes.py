"""The READMEs' generated blocks match the committed results (``cog --check``).

A README's tables and figures sit between ``[[[cog ...]]]`` and ``[[[end]]]``
markers and are generated from the committed results files by the renderers
each benchmark's own report uses; the prose around them is plain Markdown.
``cog -r @benchmarks/readmes.txt`` regenerates them after a results file changes.
"""

import os
import re
import shutil

import pytest
from cogapp import Cog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILELIST = os.path.join("benchmarks", "readmes.txt")
FIX = "regenerate them: cog -r @benchmarks/readmes.txt"


def _cog(*args: str) -> int:
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    return Cog().main(["cog", "--check", "--diff", "--check-fail-msg", FIX, *args])
  finally:
    os.chdir(cwd)


def _readmes() -> list[str]:
  with open(os.path.join(ROOT, FILELIST), encoding="utf-8") as f:
    return [line.split()[0] for line in f if line.strip()]


def test_every_generated_block_matches_the_committed_results():
  assert _cog("@" + FILELIST) == 0


def test_the_readme_stays_short():
  # the optax/flax shape: what it is, install, two commands, an API tour, one results
  # table and its verdict; everything else lives in the docs and benchmarks/README.md
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    assert len(f.read().splitlines()) <= 200


def test_every_readme_that_quotes_results_is_generated():
  expected = {
    "README.md",
    "benchmarks/README.md",
    "benchmarks/costs/README.md",
    "benchmarks/curvature/README.md",
    "docs/guides/batchnorm.md",
    "docs/guides/gradient_accumulation.md",
    "docs/guides/lars_from_sgd.md",
    "docs/guides/optimizer_state_and_masks.md",
    "docs/guides/reproducing.md",
  }
  assert set(_readmes()) == expected
  for path in _readmes():
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
      assert "[[[cog" in f.read(), f"{path} has no generated block"


def test_every_generated_block_writes_something():
  # cog runs no code, silently, in a block whose code starts on the ``[[[cog``
  # line and goes on to further lines: its table would vanish from the README.
  for path in _readmes():
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
      blocks = re.findall(r"\[\[\[cog(.*?)\]\]\](.*?)\[\[\[end\]\]\]", f.read(), flags=re.S)
    assert blocks, path
    for code, output in blocks:
      where = f"{path}: block {code.strip().splitlines()[0][:60]!r}"
      assert "\n" not in code or not code.split("\n")[0].strip(), (
        f"{where}: code on the [[[cog line"
      )
      assert output.strip(" ->\n"), f"{where} generates nothing"


@pytest.fixture
def readme_copy(tmp_path):
  """A copy of README.md (its generated blocks read the committed results)."""
  dst = tmp_path / "README.md"
  shutil.copy(os.path.join(ROOT, "README.md"), dst)
  return dst


def test_a_reworded_sentence_passes(readme_copy):
  text = readme_copy.read_text(encoding="utf-8")
  first_prose = next(line for line in text.splitlines() if line[:1].isalpha() and "[[[" not in line)
  readme_copy.write_text(text.replace(first_prose, first_prose + " Reworded."), encoding="utf-8")
  assert _cog("-I", ROOT, str(readme_copy)) == 0


def test_a_stale_figure_fails(readme_copy):
  # What a README looks like after its results file changed and it was not
  # regenerated: one generated line differs from what the renderer writes now.
  lines = readme_copy.read_text(encoding="utf-8").splitlines(keepends=True)
  end_of_code = next(i for i, line in enumerate(lines) if "]]]" in line and "[[[end" not in line)
  lines[end_of_code + 1] = lines[end_of_code + 1].rstrip("\n") + " 0.1\n"
  readme_copy.write_text("".join(lines), encoding="utf-8")
  assert _cog("-I", ROOT, str(readme_copy)) == 5
