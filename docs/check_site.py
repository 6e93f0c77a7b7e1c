"""Check a built documentation site for what a reader without the network would miss.

Run it on the output of ``sphinx-build -b html docs build/docs`` (a CI step):

    python docs/check_site.py build/docs

It reads every ``.html`` page of the site and reports, one line per problem:

- **unrendered math**: TeX delimiters (``\\(``, ``\\[``, ``$$``) in the text of a page
  outside code and outside the math elements (``class="math"``) that the renderer
  typesets; a page with math elements that loads no math renderer from the site
  itself; a math renderer (MathJax, KaTeX) loaded from a remote URL;
- **remote resources**: a script, stylesheet, image or frame loaded from another host
  (the page does not show as built without the network);
- **broken links**: a relative ``href``/``src`` that does not resolve to a file of the
  built site;
- **repository links**: a link to a file of the project's repository (its
  ``/blob/`` or ``/tree/`` URLs, from ``[project.urls]`` in pyproject.toml), which is a
  placeholder URL here: link the site's own page or download instead.

Exit status 0 when the site is clean, 1 otherwise. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import html.parser
import pathlib
import posixpath
import re
import sys
import tomllib
import urllib.parse
from collections.abc import Callable, Iterable

# TeX that a math renderer should have typeset: MathJax's and LaTeX's delimiters.
TEX_DELIMITERS = re.compile(r"\\\(|\\\[|\$\$")
# Scripts that typeset math in the browser.
MATH_RENDERER = re.compile(r"mathjax|katex", re.IGNORECASE)
# Elements whose text is code (TeX there is shown as written, on purpose).
CODE_TAGS = frozenset({"pre", "code", "kbd", "samp", "tt", "script", "style", "textarea"})
CODE_CLASSES = frozenset({"highlight", "literal", "literal-block", "doctest"})
# Classes of the elements a math renderer typesets (sphinx.ext.mathjax, myst).
MATH_CLASSES = frozenset({"math", "math-display", "math-inline"})
VOID_TAGS = frozenset(
  {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track"}
  | {"wbr", "param"}
)
# Attributes that point at another file, per tag.
LINK_ATTRS = {
  "a": "href",
  "link": "href",
  "img": "src",
  "script": "src",
  "source": "src",
  "iframe": "src",
  "embed": "src",
  "video": "src",
  "audio": "src",
  "track": "src",
  "object": "data",
}
# URL schemes that fetch from another host.
REMOTE_SCHEMES = frozenset({"http", "https", "ftp", "ws", "wss"})
# Folders of the site that hold no pages (the themes copy Jinja templates into _static/).
SKIPPED = ("_static/", "_sources/", "_downloads/", "_images/")
# <link rel=...> values that navigate rather than load something into the page.
NAVIGATION_RELS = frozenset(
  {"alternate", "author", "canonical", "copyright", "help", "index", "license", "next"}
  | {"prev", "search", "top", "up", "first", "last", "contents", "start", "bookmark"}
)


class _PageParser(html.parser.HTMLParser):
  """Collects a page's links, loaded resources, math elements and stray TeX."""

  def __init__(self) -> None:
    super().__init__(convert_charrefs=True)
    self.stack: list[tuple[str, str | None]] = []  # (tag, "code" | "math" | None)
    self.links: list[tuple[str, str]] = []  # (tag, url) of every href/src
    self.resources: list[tuple[str, str]] = []  # (tag, url) loaded into the page
    self.math_elements = 0
    self.stray_tex: list[str] = []

  def _inside(self, kind: str) -> bool:
    return any(k == kind for _, k in self.stack)

  def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
    a = {k: (v or "") for k, v in attrs}
    classes = set(a.get("class", "").split())
    attr = LINK_ATTRS.get(tag)
    if attr and a.get(attr):
      url = a[attr].strip()
      self.links.append((tag, url))
      rels = set(a.get("rel", "").lower().split())
      if tag != "a" and not (tag == "link" and rels and rels <= NAVIGATION_RELS):
        self.resources.append((tag, url))
    if tag in VOID_TAGS:
      return
    kind = None
    if tag in CODE_TAGS or classes & CODE_CLASSES:
      kind = "code"
    elif classes & MATH_CLASSES:
      kind = "math"
      if not self._inside("math"):
        self.math_elements += 1
    self.stack.append((tag, kind))

  def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
    self.handle_starttag(tag, attrs)
    if tag not in VOID_TAGS and self.stack and self.stack[-1][0] == tag:
      self.stack.pop()

  def handle_endtag(self, tag: str) -> None:
    for i in range(len(self.stack) - 1, -1, -1):  # close it, and any left open inside it
      if self.stack[i][0] == tag:
        del self.stack[i:]
        return

  def handle_data(self, data: str) -> None:
    if TEX_DELIMITERS.search(data) and not (self._inside("code") or self._inside("math")):
      self.stray_tex.append(" ".join(data.split())[:80])


def _is_remote(url: str) -> bool:
  """Whether ``url`` is fetched from a host (``data:``, ``mailto:`` and the like are not)."""
  return url.startswith("//") or urllib.parse.urlsplit(url).scheme in REMOTE_SCHEMES


def _is_relative(url: str) -> bool:
  """Whether ``url`` names a file of the site, relative to the page (no scheme)."""
  return not url.startswith("//") and not urllib.parse.urlsplit(url).scheme


def _resolve(page: str, url: str) -> str | None:
  """The site-relative path that ``url`` on ``page`` names (None: outside the site)."""
  path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
  if not path:  # "#anchor" or "?query": the page itself
    return page
  if path.startswith("/"):
    return None  # the site's root is not known to a page opened from disk
  joined = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
  if joined == ".." or joined.startswith("../"):
    return None
  if joined == ".":
    return "index.html"
  return posixpath.join(joined, "index.html") if path.endswith("/") else joined


def page_problems(
  text: str,
  page: str,
  exists: Callable[[str], bool],
  repository_url: str | None = None,
) -> list[str]:
  """Problems of one page, each a line ``page: what``.

  Args:
    text: the page's HTML.
    page: its path in the site, relative to the site's root, with ``/`` (``guides/a.html``).
    exists: whether a site-relative path (``_static/x.js``) is a file of the site.
    repository_url: the project's repository; links to its ``/blob/`` and ``/tree/``
      files are reported (None: not checked).
  """
  parser = _PageParser()
  parser.feed(text)
  parser.close()
  problems = []
  for snippet in parser.stray_tex:
    problems.append(f"unrendered TeX outside math and code: {snippet!r}")
  renderers = [
    url for tag, url in parser.resources if tag == "script" and MATH_RENDERER.search(url)
  ]
  for url in renderers:
    if _is_remote(url):
      problems.append(f"the math renderer is loaded from a remote URL: {url}")
  local = [u for u in renderers if not _is_remote(u) and exists(_resolve(page, u) or "")]
  if parser.math_elements and not local:
    problems.append(
      f"{parser.math_elements} math elements, but no math renderer loaded from the site "
      f"({', '.join(renderers) or 'none'}): the math shows as raw TeX"
    )
  for tag, url in parser.resources:
    if _is_remote(url) and not (tag == "script" and MATH_RENDERER.search(url)):
      problems.append(f"<{tag}> loads a remote resource (needs the network): {url}")
  repo_files = []
  if repository_url:
    base = repository_url.rstrip("/")
    repo_files = [f"{base}/blob/", f"{base}/tree/"]
  for tag, url in parser.links:
    if any(url.startswith(p) for p in repo_files):
      problems.append(
        f"<{tag}> links a file of the (placeholder) repository, not of the site: {url}"
      )
    if not _is_relative(url):
      continue
    target = _resolve(page, url)
    if target is None or not exists(target):
      problems.append(f"<{tag}> {url!r} does not resolve to a file of the site")
  return [f"{page}: {p}" for p in problems]


def repository_url_from(pyproject: pathlib.Path) -> str | None:
  """``[project.urls] Source`` (or ``Homepage``) of ``pyproject``, when it exists."""
  if not pyproject.is_file():
    return None
  urls = tomllib.loads(pyproject.read_text()).get("project", {}).get("urls", {})
  return urls.get("Source") or urls.get("Homepage")


def site_problems(root: pathlib.Path, repository_url: str | None = None) -> list[str]:
  """Problems of every ``.html`` page under ``root`` (a built site)."""
  root = root.resolve()

  def exists(path: str) -> bool:
    target = (root / path).resolve()
    return target.is_relative_to(root) and (target.is_file() or (target / "index.html").is_file())

  problems: list[str] = []
  for html_file in sorted(root.rglob("*.html")):
    page = html_file.relative_to(root).as_posix()
    if page.startswith(SKIPPED):
      continue
    problems += page_problems(html_file.read_text(errors="replace"), page, exists, repository_url)
  return problems


def main(argv: Iterable[str] | None = None) -> int:
  """Checks the site; prints each problem and a summary; returns the exit status."""
  default_pyproject = pathlib.Path(__file__).resolve().parent.parent / "pyproject.toml"
  parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
  parser.add_argument("site", type=pathlib.Path, help="the built site (e.g. build/docs)")
  parser.add_argument(
    "--repository-url",
    default=repository_url_from(default_pyproject),
    help="report links to this repository's /blob/ and /tree/ files (default: "
    "[project.urls] Source of pyproject.toml); '' turns it off",
  )
  args = parser.parse_args(None if argv is None else list(argv))
  if not (args.site / "index.html").is_file():
    print(f"check_site: {args.site} has no index.html: build the site first", file=sys.stderr)
    return 1
  problems = site_problems(args.site, args.repository_url or None)
  for p in problems:
    print(p)
  pages = len({p.split(": ", 1)[0] for p in problems})
  total = sum(
    1
    for f in args.site.rglob("*.html")
    if not f.relative_to(args.site).as_posix().startswith(SKIPPED)
  )
  if problems:
    print(f"check_site: {len(problems)} problems in {pages} of {total} pages of {args.site}")
    return 1
  print(f"check_site: {total} pages of {args.site}: math rendered offline, every link resolves")
  return 0


if __name__ == "__main__":
  sys.exit(main())
