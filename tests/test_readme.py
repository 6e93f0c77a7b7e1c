"""The README's API-tour snippet runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_api_tour_runs():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
  assert blocks, "README has no python block"
  namespace = {}
  exec(compile(blocks[0], "README.md", "exec"), namespace)  # pylint: disable=exec-used
  assert abs(namespace["big"].peak_learning_rate - 32.0) < 1e-9
  assert namespace["big"].warmup_epochs == 10.0
  assert namespace["params"]["dense"]["kernel"].shape == (784, 10)


def _links(text):
  """Targets of Markdown links and images, without anchors."""
  return [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text)]


def test_readme_links_resolve_or_are_absolute():
  """From the package index relative links break: they must be marked as repository-relative,
  and each must point at a file of the repository."""
  text = README.read_text()
  assert "relative to the repository" in text
  assert "https://github.com/legw-dev/legw" in text
  for target in _links(text):
    if target.startswith(("http://", "https://")) or not target:
      continue
    assert (README.parent / target).exists(), f"README links to a missing {target}"


def test_readme_says_where_the_main_job_runs_and_how_to_build_the_docs():
  text = README.read_text()
  assert "from a checkout of the repository" in text
  assert "python -m benchmarks.batch_scaling" in text
  assert 'pip install -e ".[docs]" && sphinx-build -W' in text
  assert "legw[plot]" in text
