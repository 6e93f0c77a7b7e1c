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
