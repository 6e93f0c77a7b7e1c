"""The ``legw`` command line: every mistake ends in one line on stderr, never a traceback."""

import builtins
import subprocess
import sys

import pytest

import legw
from legw import cli


def _run(capsys, *argv):
  """(exit status, stdout, stderr) of ``legw argv``, run in this process."""
  try:
    status = cli.main(list(argv))
  except SystemExit as e:  # argparse: --help, --version and its own errors
    status = e.code
  out, err = capsys.readouterr()
  return status, out, err


def _one_line(err):
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert "Traceback" not in err
  return lines[0]


def test_version(capsys):
  status, out, _ = _run(capsys, "--version")
  assert status == 0 and out.strip() == f"legw {legw.__version__}"


def test_every_option_shows_its_default(capsys):
  status, out, _ = _run(capsys, "recipe", "--help")
  assert status == 0
  parser = cli.build_parser()
  recipe = parser._subparsers._group_actions[0].choices["recipe"]  # pylint: disable=protected-access
  for action in recipe._actions:  # pylint: disable=protected-access
    if action.dest != "help":
      assert action.help, f"{action.option_strings} has no help"
      assert action.option_strings[0] in out
  assert out.count("(default:") == len(recipe._actions) - 1  # pylint: disable=protected-access
  assert "(default: 2^2.5)" in out


@pytest.mark.parametrize(
  "argv, expected",
  [
    (["--base-learning-rate", "2^x"], "argument --base-learning-rate: invalid number '2^x'"),
    (["--base-learning-rate", "2^100000"], "invalid number '2^100000'"),
    (["--num-epochs", "abc"], "argument --num-epochs: invalid number 'abc'"),
    (["--num-epochs", "nan"], "invalid number 'nan'"),
    (["--batch-sizes", "1024", "0"], "argument --batch-sizes: invalid size '0'"),
    (["--base-learning-rate", "-1"], "base_learning_rate must be in [0, inf)"),
    (["--num-epochs", "0.2"], "warmup of 0.3125 epochs"),  # checked by legw, not argparse
  ],
)
def test_bad_number_is_one_clean_line(capsys, argv, expected):
  status, out, err = _run(capsys, "recipe", *argv)
  assert status == 2 and not out
  line = _one_line(err)
  assert line.startswith("legw recipe: error: ") and expected in line
  assert line.endswith("; see 'legw recipe --help'"), line  # as argparse's own errors
  assert ".;" not in line


def test_missing_output_folder_is_one_clean_line(capsys, tmp_path):
  missing = tmp_path / "no" / "such" / "folder" / "fig.png"
  status, out, err = _run(capsys, "recipe", "--plot", str(missing))
  assert status == 2 and not out
  assert _one_line(err) == (
    f"legw recipe: error: --plot {missing}: the folder {missing.parent} does not exist; "
    "see 'legw recipe --help'"
  )
  assert not missing.parent.exists()


def test_plot_without_matplotlib_names_the_extra(capsys, tmp_path, monkeypatch):
  real_import = builtins.__import__

  def no_matplotlib(name, *args, **kwargs):
    if name == "matplotlib" or name.startswith("matplotlib."):
      raise ModuleNotFoundError(f"No module named {name!r}")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_matplotlib)
  for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
    monkeypatch.delitem(sys.modules, name)
  out_file = tmp_path / "fig.png"
  status, out, err = _run(capsys, "recipe", "--plot", str(out_file))
  assert status == 2 and not out
  assert _one_line(err) == (
    "legw recipe: error: --plot needs matplotlib, which is not installed: "
    "pip install 'legw[plot]'; see 'legw recipe --help'"
  )
  assert not out_file.exists()


def test_prints_the_ladder(capsys):
  status, out, err = _run(capsys, "recipe", "--batch-sizes", "1024", "32768")
  assert status == 0 and not err
  assert "32768  32       32     5.00         10" in out


def test_python_dash_m_legw():
  """``python -m legw`` is the same program (a fresh interpreter, no traceback)."""
  proc = subprocess.run(
    [sys.executable, "-m", "legw", "recipe", "--num-epochs", "x"],
    capture_output=True,
    text=True,
    check=False,
    timeout=120,
  )
  assert proc.returncode == 2 and not proc.stdout
  assert _one_line(proc.stderr).startswith("legw recipe: error: argument --num-epochs")


def test_poly_origin_reaches_the_poly_recipe_only(capsys):
  args = cli.build_parser().parse_args(
    ["recipe", "--decay", "poly", "multistep", "--poly-origin", "step_0"]
  )
  poly, multistep = (cli.recipe_from_args(args, d) for d in args.decay)
  assert (poly.poly_origin, multistep.poly_origin) == ("step_0", "warmup_end")
  status, out, err = _run(
    capsys,
    "recipe",
    "--decay",
    "poly",
    "multistep",
    "--poly-origin",
    "step_0",
    "--batch-sizes",
    "1024",
    "32768",
  )
  assert status == 0, err


@pytest.mark.parametrize("plot", [False, True])
def test_multistep_boundaries_inside_a_scaled_warmup_fail_before_printing(capsys, tmp_path, plot):
  """LEGW's warmup at batch 131072 is 0.3125 x 128 = 40 epochs, past the default boundary 30."""
  fig = tmp_path / "fig.png"
  argv = ["recipe", "--decay", "poly", "multistep", "--batch-sizes", "1024", "131072"]
  status, out, err = _run(capsys, *argv, *(["--plot", str(fig)] if plot else []))
  assert status == 2 and not out  # no table printed before the error
  line = _one_line(err)
  assert line.startswith("legw recipe: error: --decay multistep: at batch size 131072 ")
  assert "the warmup is 40 epochs" in line and "--boundary-epochs 30 60 80" in line
  assert "Choose each boundary after the longest warmup" in line
  assert line.endswith("; see 'legw recipe --help'")
  assert not fig.exists()
  # Boundaries after the longest warmup work, and the help says how to choose them.
  status, out, err = _run(capsys, *argv, "--boundary-epochs", "50", "70", "85")
  assert status == 0 and not err and out.count("# LEGW ladder") == 2
  status, out, _ = _run(capsys, "recipe", "--help")
  assert "after the longest warmup" in " ".join(out.split())


def test_multistep_boundary_past_the_run_names_it(capsys):
  status, out, err = _run(capsys, "recipe", "--decay", "multistep", "--boundary-epochs", "95")
  assert status == 2 and not out
  line = _one_line(err)
  assert "boundary_epochs must lie strictly between" in line and "got 95" in line
