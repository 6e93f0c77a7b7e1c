"""docs/check_site.py, the CI check of the built documentation site, on tiny pages.

Each case is a small HTML string that the checker must pass or fail; the site build
itself (``sphinx-build``) and the check on it are CI steps of their own.
"""

import importlib.util
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_site", ROOT / "docs" / "check_site.py")
check_site = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("check_site", check_site)
_spec.loader.exec_module(check_site)

FILES = {"index.html", "guides/a.html", "_static/mathjax/tex-chtml.js", "_static/x.css"}
REPO = "https://github.com/owner/proj"
LOCAL_MATHJAX = '<script defer src="../_static/mathjax/tex-chtml.js"></script>'


def _problems(body, head="", page="guides/a.html"):
  text = f"<html><head>{head}</head><body>{body}</body></html>"
  return check_site.page_problems(text, page, FILES.__contains__, REPO)


def test_a_clean_page_passes():
  body = (
    '<p>See <a href="../index.html#top">the index</a>, <a href="a.html">this page</a>, '
    '<a href="#x">a section</a>, <a href="../">the root</a> and '
    '<a href="https://example.org/">a site</a>.</p>'
    '<p>Inline <span class="math notranslate nohighlight">\\(\\gamma_t\\)</span> and</p>'
    '<div class="math notranslate nohighlight">\\[\\lambda_l = \\eta\\]</div>'
    '<pre>print("\\\\( in code is code")  # $$</pre><p><code>\\[x\\]</code></p>'
    '<div class="highlight"><span>$$ not math</span></div>'
    '<img alt="dot" src="data:image/png;base64,iVBORw0KGgo="/>'
    '<a href="mailto:someone@example.org">mail</a>'
  )
  assert (
    _problems(body, head=LOCAL_MATHJAX + '<link rel="stylesheet" href="../_static/x.css">') == []
  )


@pytest.mark.parametrize(
  "text",
  ["\\(\\gamma_t\\)", "\\[\\lambda_l = x\\]", "$$x^2$$"],
  ids=["inline", "display", "dollars"],
)
def test_tex_outside_math_and_code_is_unrendered(text):
  (problem,) = _problems(f"<p>The rate <em>{text}</em>.</p>", head=LOCAL_MATHJAX)
  assert problem.startswith("guides/a.html: unrendered TeX outside math and code")


def test_math_without_a_local_renderer():
  math = '<span class="math">\\(k\\)</span><span class="math">\\(\\eta\\)</span>'
  (problem,) = _problems(math)  # no renderer at all
  assert "2 math elements, but no math renderer loaded from the site" in problem
  # A renderer whose file is missing from the site does not count.
  problems = _problems(math, head='<script src="../_static/mathjax/missing.js"></script>')
  assert len(problems) == 2 and any("no math renderer loaded from the site" in p for p in problems)
  # A remote renderer is reported even on a page without math.
  cdn = '<script defer src="https://cdn.jsdelivr.net/npm/mathjax@4/tex-mml-chtml.js"></script>'
  problems = _problems(math, head=cdn)
  assert any("math renderer is loaded from a remote URL" in p for p in problems)
  assert any("no math renderer loaded from the site" in p for p in problems)
  assert len(_problems("<p>no math</p>", head=cdn)) == 1
  assert _problems(math, head=LOCAL_MATHJAX) == []


@pytest.mark.parametrize(
  "tag",
  [
    '<img alt="Open In Colab" src="https://colab.research.google.com/assets/colab-badge.svg"/>',
    '<script src="//cdn.example.org/lib.js"></script>',
    '<link rel="stylesheet" href="https://fonts.example.org/css">',
  ],
  ids=["image", "script", "stylesheet"],
)
def test_remote_resources_are_reported(tag):
  (problem,) = _problems(tag)
  assert "loads a remote resource (needs the network)" in problem


@pytest.mark.parametrize(
  "tag, url",
  [
    ('<a href="{}">x</a>', "missing.html"),
    ('<a href="{}">x</a>', "../benchmarks/README.html#results"),
    ('<img alt="x" src="{}"/>', "../_images/plot.png"),
    ('<script src="{}"></script>', "../_static/missing.js?v=1"),
    ('<a href="{}">x</a>', "../../outside.html"),
    ('<a href="{}">x</a>', "/abs/index.html"),
    ('<link rel="next" href="{}">', "b.html"),
  ],
)
def test_relative_links_must_resolve_in_the_site(tag, url):
  (problem,) = _problems(tag.format(url))
  assert (
    problem
    == f"guides/a.html: <{tag[1:].split()[0]}> {url!r} does not resolve to a file of the site"
  )


def test_links_to_the_repositorys_files_are_reported():
  blob = f'<a href="{REPO}/blob/main/benchmarks/README.md">README</a>'
  tree = f'<a href="{REPO}/tree/main/docs">docs</a>'
  problems = _problems(blob + tree + f'<a href="{REPO}">the repository</a>')
  assert len(problems) == 2 and all("file of the (placeholder) repository" in p for p in problems)
  text = f"<html><body>{blob}</body></html>"
  assert check_site.page_problems(text, "index.html", FILES.__contains__, None) == []


def test_site_problems_and_main_on_a_tiny_site(tmp_path, capsys):
  (tmp_path / "_static").mkdir()
  (tmp_path / "_static" / "template.html").write_text('<a href="{{ pathto(x) }}">t</a>')
  (tmp_path / "index.html").write_text('<a href="page.html">page</a>')
  assert check_site.main([str(tmp_path), "--repository-url", ""]) == 1  # page.html is missing
  out = capsys.readouterr().out
  assert "index.html: <a> 'page.html' does not resolve" in out and "template" not in out
  (tmp_path / "page.html").write_text('<a href="index.html">home</a>')
  assert check_site.site_problems(tmp_path) == []
  assert check_site.main([str(tmp_path)]) == 0
  assert check_site.main([str(tmp_path / "nothing")]) == 1


def test_the_repository_url_comes_from_pyproject():
  url = check_site.repository_url_from(ROOT / "pyproject.toml")
  assert url and url.startswith("https://")
  assert check_site.repository_url_from(ROOT / "no-such-file.toml") is None
