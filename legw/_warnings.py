"""Warnings that name the user's line, not legw's.

A warning issued with ``stacklevel=2`` names the line that called the warning
function; when that caller is legw itself (``Recipe.schedule`` calls
``legw_schedule``), the user sees a line of legw. :func:`warn` walks out of
legw's own frames instead, so a warning names the first line outside legw
whichever public function it came through.
"""

from __future__ import annotations

import os
import sys
import types
import warnings

_LEGW_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_stacklevel() -> int:
  """The ``stacklevel`` of the first frame outside legw, seen from :func:`warn`'s caller.

  Frames of legw's modules, and the ``__init__`` that ``dataclasses``
  generates (it runs a legw ``__post_init__``), are skipped.
  """
  frame: types.FrameType | None = sys._getframe(2)  # the function that called `warn`
  level = 2
  while frame is not None:
    filename = frame.f_code.co_filename
    generated_init = filename.startswith("<") and frame.f_code.co_name == "__init__"
    if not (os.path.abspath(filename).startswith(_LEGW_DIR) or generated_init):
      return level
    frame = frame.f_back
    level += 1
  return level


def warn(message: str, category: type[Warning] = UserWarning) -> None:
  """``warnings.warn(message, category)`` at the first line outside legw."""
  warnings.warn(message, category, stacklevel=_caller_stacklevel())
