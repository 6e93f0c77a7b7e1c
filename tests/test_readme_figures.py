"""The READMEs' figures match the committed results files (benchmarks.readme_figures)."""

import dataclasses
import os

from benchmarks import readme_figures as rf


def test_every_readme_figure_matches_its_results_file():
  assert rf.check() == []


def test_a_figure_that_differs_from_its_results_file_is_reported():
  claim = next(c for c in rf.CLAIMS if c.what == "headline table, mnist5k")
  # The same table rendered one seed short: the README no longer matches.
  fewer = dataclasses.replace(
    claim, render=lambda rows: claim.render([r for r in rows if r["seed"] != 2])
  )
  problems = rf.check([claim, fewer])
  assert len(problems) == 1 and "headline table, mnist5k" in problems[0]


def test_line_wrapping_bold_and_case_do_not_matter():
  assert rf._normalize("A **95.2 ± 0.6**\n  at 64×") == rf._normalize("a 95.2 ± 0.6 at 64×")


def test_every_benchmark_readme_is_checked():
  assert {c.doc for c in rf.CLAIMS} == {
    "README.md",
    os.path.join("benchmarks", "README.md"),
    os.path.join("benchmarks", "costs", "README.md"),
    os.path.join("benchmarks", "curvature", "README.md"),
    os.path.join("docs", "guides", "reproducing.md"),
  }


def test_numbers_are_written_as_the_readmes_write_them():
  assert rf._sci(1.5179484247481347e175) == "1.5e175"
  assert rf._sci(606094.2) == "6.1e5"
  assert [rf._loss(x) for x in (0.0171, 0.17358, 20.276)] == ["0.0171", "0.174", "20.3"]
