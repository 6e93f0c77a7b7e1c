"""Sphinx extension: a site that reads without the network.

A remote image (the notebooks' "Open In Colab" badge) shows as its alt text when the
network is off; this turns every image with a remote URI into its alt text, so that
the badge becomes a plain text link ("Open In Colab") to the same target.
``docs/check_site.py`` checks the built site for any remote resource left.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform


def is_remote(uri: str) -> bool:
  """Whether an image URI is loaded from another host."""
  return uri.startswith(("http://", "https://", "//"))


class RemoteImagesAsText(SphinxTransform):
  """Replaces each image with a remote URI by its alt text (kept inside its link)."""

  default_priority = 200  # before the image collector reads the image URIs

  def apply(self, **kwargs: Any) -> None:
    for image in list(self.document.findall(nodes.image)):
      if is_remote(image.get("uri", "")):
        text = image.get("alt") or image["uri"]
        image.replace_self(nodes.inline(text, text, classes=["remote-image-alt"]))


def setup(app: Sphinx) -> dict[str, Any]:
  app.add_transform(RemoteImagesAsText)
  return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
