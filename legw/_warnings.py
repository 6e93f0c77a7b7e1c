"""Warnings that name the user's line, not legw's.

:func:`warn` walks out of legw's frames (``stacklevel=2`` names legw's caller when legw
calls itself, e.g. ``Recipe.schedule`` calling ``legw_schedule``).
"""

from __future__ import annotations

import os
import sys
import types
import warnings

_LEGW_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_stacklevel() -> int:
  """The ``stacklevel`` of the first frame outside legw (and outside the ``__init__`` that
  ``dataclasses`` generates), seen from :func:`warn`'s caller."""
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
