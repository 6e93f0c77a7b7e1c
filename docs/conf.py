"""Sphinx configuration for legw's documentation.

Build it (warnings are errors, as in CI) from the repository root:

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs build/docs

The notebooks are rendered with the outputs committed in notebooks/ (they are
not executed here; CI runs them with nbmake). The API page lists every name in
``legw.__all__`` (see _ext/legw_api.py).

The site reads offline: MathJax is shipped with it (the ``sphinx-mathjax-offline``
package copies MathJax into ``_static/mathjax``), remote images become text links
(_ext/legw_site.py), and the benchmark READMEs are pages of the site
(docs/benchmarks/). ``python docs/check_site.py build/docs`` checks all three on the
built HTML (a CI step).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))  # legw from this checkout

import legw  # noqa: E402

project = "legw"
author = "The legw authors"
copyright = "the legw authors"  # noqa: A001
release = legw.__version__
version = release

extensions = [
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx-mathjax-offline",  # MathJax 3 in _static/mathjax: math renders with no network
  "sphinx.ext.intersphinx",
  "sphinx.ext.viewcode",
  "myst_nb",
  "legw_api",
  "legw_site",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "_ext", "conftest.py"]
root_doc = "index"

# Docstrings are Google style.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": False}
autosummary_generate = False
add_module_names = False
python_use_unqualified_type_names = True

# Notebooks: render what is committed, never execute.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

intersphinx_mapping = {}  # offline build: no inventories fetched
nitpicky = False
suppress_warnings = [
  # MyST renders the notebooks' Markdown headings below the top level (fine).
  "myst.header",
]

html_theme = "sphinx_book_theme"
html_title = f"legw {release}"
html_theme_options = {
  "repository_url": "https://github.com/legw-dev/legw",  # placeholder, as in pyproject.toml
  "use_repository_button": True,
  "show_toc_level": 2,
  # pydata-sphinx-theme >= 0.16 puts a search button in a header strip above the
  # sidebar's own search field unless this is set: one search box, in the sidebar.
  "navbar_persistent": [],
}
html_static_path = ["_static"]
html_css_files = ["legw.css"]
