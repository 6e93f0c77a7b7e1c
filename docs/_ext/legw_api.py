"""Sphinx extension: the API reference, generated from ``legw.__all__``.

``.. legw-api::`` expands to one section per module that defines public names (its
title is the first line of the module's docstring), each with an autosummary table
and the autodoc entry of every name. A name added to ``legw.__all__`` therefore gets
its entry with no edit here; and the build warns (an error under ``sphinx-build -W``)
if any name in ``legw.__all__`` ends up without an entry.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

# Sections in reading order; a module not listed here comes after these.
MODULE_ORDER = (
  "legw._scaling",
  "legw._schedules",
  "legw._recipe",
  "legw._batch_schedule",
  "legw._noise_scale",
  "legw._adascale",
  "legw._lars",
  "legw._lamb",
  "legw._masks",
  "legw._curvature",
  "legw._cblr",
  "legw._diagnostics",
  "legw._losses",
)


def public_names(package: str = "legw") -> list[str]:
  """``package.__all__``, in its order."""
  return list(importlib.import_module(package).__all__)


def group_by_module(package: str = "legw") -> dict[str, list[str]]:
  """Public names grouped by the module that defines them, in :data:`MODULE_ORDER`."""
  pkg = importlib.import_module(package)
  groups: dict[str, list[str]] = {}
  for name in public_names(package):
    module = getattr(getattr(pkg, name), "__module__", None) or package
    groups.setdefault(module, []).append(name)
  rank = {m: i for i, m in enumerate(MODULE_ORDER)}
  return dict(sorted(groups.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _title(module: str) -> str:
  doc = inspect.getdoc(importlib.import_module(module)) or module
  first = doc.strip().splitlines()[0].strip().rstrip(".")
  return first.replace("``", "").replace("`", "")


def api_rst(package: str = "legw") -> str:
  """The reStructuredText of the API reference: every name of ``package.__all__``."""
  pkg = importlib.import_module(package)
  lines = [f".. currentmodule:: {package}", ""]
  for module, names in group_by_module(package).items():
    title = _title(module)
    lines += [title, "-" * len(title), "", ".. autosummary::", ""]
    lines += [f"   {n}" for n in names]
    lines.append("")
    for n in names:
      kind = "autoclass" if inspect.isclass(getattr(pkg, n)) else "autofunction"
      lines.append(f".. {kind}:: {n}")
      if kind == "autoclass":
        lines.append("   :members:")
      lines.append("")
  return "\n".join(lines)


class LegwApi(SphinxDirective):
  """``.. legw-api::`` — the generated API reference (no arguments)."""

  has_content = False

  def run(self) -> list[nodes.Node]:
    source = StringList(api_rst().splitlines(), source="<legw-api>")
    node = nodes.section()
    node.document = self.state.document
    nested_parse_with_titles(self.state, source, node)
    return node.children


def _skip_namedtuple_fields(app, what, name, obj, skip, options) -> Any:
  """NamedTuple fields carry only "Alias for field number N": leave them out."""
  doc = getattr(obj, "__doc__", None) or ""
  if what == "class" and doc.startswith("Alias for field number"):
    return True
  return None


def _check_every_name_documented(app: Sphinx, env) -> None:
  objects = env.get_domain("py").objects
  missing = [n for n in public_names() if f"legw.{n}" not in objects]
  for n in missing:
    logger.warning("legw.%s is in legw.__all__ but has no entry in the API reference", n)


def setup(app: Sphinx) -> dict[str, Any]:
  app.add_directive("legw-api", LegwApi)
  app.connect("autodoc-skip-member", _skip_namedtuple_fields)
  app.connect("env-check-consistency", _check_every_name_documented)
  return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
