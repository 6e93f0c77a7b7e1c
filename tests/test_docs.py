"""The documentation sources: the API page covers legw.__all__, the guides are doctested.

Building the site (``sphinx-build -W``) and running the guides' examples
(``pytest --doctest-glob='*.md' docs``) are CI steps of their own; these checks
are instant and need no Sphinx.
"""

import importlib.util
import pathlib
import re
import sys

import pytest

import legw

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GUIDES = sorted((DOCS / "guides").glob("*.md"))


def _api_module():
  spec = importlib.util.spec_from_file_location("legw_api", DOCS / "_ext" / "legw_api.py")
  if importlib.util.find_spec("sphinx") is None:
    pytest.skip("the API generator is a Sphinx extension (pip install -e '.[docs]')")
  module = importlib.util.module_from_spec(spec)
  sys.modules.setdefault("legw_api", module)
  spec.loader.exec_module(module)
  return module


def test_api_reference_has_an_entry_for_every_public_name():
  rst = _api_module().api_rst()
  entries = set(re.findall(r"^\.\. auto(?:function|class):: (\w+)$", rst, flags=re.M))
  assert entries == set(legw.__all__), set(legw.__all__) ^ entries
  assert "legw-api" in (DOCS / "api.rst").read_text()


def test_every_module_section_has_a_title():
  groups = _api_module().group_by_module()
  assert sum(len(v) for v in groups.values()) == len(legw.__all__)
  for module in groups:
    assert importlib.import_module(module).__doc__, f"{module} has no docstring (its title)"


def test_index_lists_every_guide_and_notebook():
  index = (DOCS / "index.md").read_text()
  for guide in GUIDES:
    assert f"guides/{guide.stem}" in index, guide.name
  for nb in (ROOT / "notebooks").glob("*.ipynb"):
    assert f"notebooks/{nb.stem}" in index, nb.name
  assert (DOCS / "notebooks").resolve() == (ROOT / "notebooks").resolve()


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_guide_code_is_doctested(guide):
  """Every Python block of a guide is a doctest (``pycon``), so CI runs it."""
  text = guide.read_text()
  assert "```python" not in text, "write Python examples as ```pycon doctests"
  if guide.stem != "reproducing":  # shell commands only
    assert ">>> " in text


def test_guides_mention_the_names_the_readme_never_did():
  text = "\n".join(g.read_text() for g in GUIDES)
  for name in (
    "batch_size_schedule",
    "BatchSizeSchedule",
    "discard_small_loss",
    "discard_small_loss_schedule",
    "layerwise_stats",
    "applied_layerwise_stats",
    "LayerwiseStatsState",
    "local_lipschitz",
    "hutchinson_diagonal",
    "scale_learning_rate",
    "scale_warmup_epochs",
  ):
    assert f"legw.{name}" in text, name


def test_guide_measurements_have_results():
  for name in (
    "lars_from_sgd",
    "multisteps",
    "batchnorm",
    "trust_ratios",
    "noise_scale",
    "state_dtype",
  ):
    assert (ROOT / "benchmarks" / "guides" / f"{name}.py").is_file()
    assert (ROOT / "benchmarks" / "guides" / "results" / f"{name}.json").is_file()


@pytest.mark.slow
def test_guide_measurement_functions_run():
  """The code the guides show from benchmarks/guides/, on tiny inputs."""
  pytest.importorskip("flax")
  import jax
  import jax.numpy as jnp
  import numpy as np

  from benchmarks.guides import batchnorm, lars_from_sgd

  model = batchnorm.SmallCNN(bn_momentum=0.99)
  x = np.random.default_rng(0).random((2 * batchnorm.BATCH_SIZE, 28, 28), dtype=np.float32)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28)))
  old = batchnorm.RECALIBRATION_BATCHES
  batchnorm.RECALIBRATION_BATCHES = 2
  try:
    stats = batchnorm.recalibrate(model, variables["params"], variables["batch_stats"], x)
  finally:
    batchnorm.RECALIBRATION_BATCHES = old
  assert jax.tree.structure(stats) == jax.tree.structure(variables["batch_stats"])
  assert float(jnp.abs(stats["bn0"]["mean"]).max()) > 0  # no longer the initial zeros
  assert lars_from_sgd.schedule(1.0, 8, 10)(8) == pytest.approx(1.0)


def _docs_extra():
  import tomllib

  return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
    "docs"
  ]


def test_the_site_ships_its_math_renderer_and_pins_its_theme():
  """Math renders offline from a package of the docs extra; the theme pair is pinned."""
  extra = _docs_extra()
  assert any(r.startswith("sphinx-mathjax-offline") for r in extra), extra
  assert "sphinx-mathjax-offline" in (DOCS / "conf.py").read_text()
  for theme in ("sphinx-book-theme==", "pydata-sphinx-theme=="):
    assert any(r.startswith(theme) for r in extra), (theme, extra)


def test_benchmark_pages_include_the_repository_readmes():
  """docs/benchmarks/ mirrors the benchmark READMEs, so their links resolve as pages."""
  index = (DOCS / "index.md").read_text()
  pages = sorted((DOCS / "benchmarks").rglob("*.md"))
  assert pages
  for page in pages:
    rel = page.relative_to(DOCS)
    included = re.search(r"```\{include\} (\S+)", page.read_text()).group(1)
    assert (page.parent / included).resolve() == ROOT / rel, page
    assert f"<{rel.with_suffix('').as_posix()}>" in index, rel


@pytest.mark.slow
def test_trust_ratio_log_of_the_guide_runs(tmp_path):
  """The logging guide's run on one epoch: a row per applied update, MultiSteps equal
  to the direct batch, and its plot."""
  pytest.importorskip("flax")
  pytest.importorskip("matplotlib")
  from benchmarks.guides import trust_ratios

  direct = trust_ratios.train(1024, num_epochs=1)
  multi = trust_ratios.train(1024, micro_steps=4, num_epochs=1)
  assert len(direct["rows"]) == len(multi["rows"]) == 4  # 4,096 examples / 1024
  kernels = [k for k in direct["rows"][0] if k.startswith("trust_ratio ")]
  assert kernels == [f"trust_ratio layers/{i}/kernel" for i in range(3)]
  for a, b in zip(direct["rows"], multi["rows"]):
    assert a["learning_rate"] == b["learning_rate"]
    for k in kernels:
      assert a[k] > 0 and abs(a[k] - b[k]) <= 1e-5 * a[k]
  trust_ratios.plot({"runs": {"batch 1024": direct}}, str(tmp_path / "plot.png"))
  assert (tmp_path / "plot.png").stat().st_size > 0


@pytest.mark.slow
def test_noise_scale_measurement_of_the_guide_runs(tmp_path):
  """The batch-size guide's measurement on tiny random data: the K vmapped gradients
  give the plain run's step, the records, the fixed summary rule, the files."""
  pytest.importorskip("flax")
  pytest.importorskip("matplotlib")
  import jax
  import jax.numpy as jnp
  import numpy as np

  import legw
  from benchmarks.batch_scaling.train import Trainer, init_key, make_optimizer
  from benchmarks.guides import common, noise_scale

  config = noise_scale.baseline()
  assert (config["batch_size"], config["learning_rate"], config["num_epochs"]) == (128, 0.1, 25)
  assert config["optimizer"] == "momentum" and config["decay"] == "constant"

  # One step: the mean of K = 8 microbatch gradients is the batch gradient.
  model = noise_scale.get_task(noise_scale.TASK).make_model()
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((16, 28, 28), dtype=np.float32))
  y = jnp.asarray(rng.integers(0, 10, 16), jnp.int32)
  plain = Trainer(model, make_optimizer("momentum"))
  measured = noise_scale.NoiseScaleTrainer(model, make_optimizer("momentum"), 16, 8)
  s0, s1 = plain.init(init_key(0), x[:1]), measured.init(init_key(0), x[:1])
  for _ in range(2):
    s0, loss0 = plain._step(s0, x, y, 0.1)
    s1, (loss1, (b_simple, grad_sq, trace_cov)) = measured._step(s1, x, y, 0.1)
  for a, b in zip(jax.tree.leaves(s0.params), jax.tree.leaves(s1.params)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert float(loss0) == pytest.approx(float(loss1), rel=1e-5)
  assert float(trace_cov) > 0 and float(b_simple) >= 0

  # A tiny run: 512 examples at batch 16 (32 steps an epoch, warmup 1), 2 epochs, a
  # record per 8 steps.
  config.update(batch_size=16, log_every=8)
  data = (
    rng.random((512, 28, 28), dtype=np.float32),
    rng.integers(0, 10, 512).astype(np.int32),
    rng.random((40, 28, 28), dtype=np.float32),
    rng.integers(0, 10, 40).astype(np.int32),
  )
  out = noise_scale.train(config, data, num_epochs=2, progress=False)
  assert [r["step"] for r in out["records"]] == list(range(8, 65, 8))
  assert [e["epoch"] for e in out["epochs"]] == [1, 2]
  assert all(0 <= e["test_accuracy"] <= 1 for e in out["epochs"])
  last = out["records"][-1]
  assert last["noise_scale"] == pytest.approx(last["trace_cov"] / last["grad_sq"], rel=1e-5)

  # The summary rule: the median over the records past half the steps.
  records = [dict(step=s, noise_scale=float(s)) for s in range(10, 110, 10)]  # 10 .. 100
  summary = noise_scale.summarize(records, 100, config | {"batch_size": 128})
  assert summary["b_noise"] == 80.0 and summary["records_in_rule"] == 5  # 60 .. 100
  assert summary["epochs"]["8192"] == legw.scale_num_epochs(25, 128, 8192, noise_scale=80.0)

  results = {
    "config": config,
    "records": out["records"],
    "epochs": out["epochs"],
    "summary": noise_scale.summarize(out["records"], out["steps"], config),
  }
  path = common.write_results("noise_scale", results, "test", str(tmp_path))
  noise_scale.plot(results, str(tmp_path / "noise_scale.png"))
  assert path == str(tmp_path / "noise_scale.json")
  assert (tmp_path / "noise_scale.png").stat().st_size > 0
