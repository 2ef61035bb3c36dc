"""The line of user code behind an access.

Walks up from the audited call to the first frame that is neither
otel-audit's nor library code (stdlib, site-packages, frozen modules): that is
the line in the user's script that called ``pd.read_csv``, not pandas' own
call to ``open``.  Which code objects are library code is decided once per
code object and cached.
"""

from __future__ import annotations

import os
import sys
from types import CodeType, FrameType

import wrapt

from otel_audit.resources import default_excluded_prefixes, safe_text

_OWN_PREFIX = os.path.dirname(os.path.abspath(__file__)) + os.sep
# otel-audit's wrappers are filed under the library they wrap (see hooks/_base.py),
# wherever that library lives; this marks them as not the user's code.
WRAPPER_FILENAME_MARKER = "<otel-audit wrapper"
_WRAPT_PREFIX = os.path.dirname(os.path.abspath(wrapt.__file__)) + os.sep
_IMPORT_MACHINERY = frozenset({"<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>"})
_is_library_code: dict[CodeType, bool] = {}


def _library(code: CodeType) -> bool:
    try:
        return _is_library_code[code]
    except KeyError:
        filename = code.co_filename
        result = (
            filename.startswith("<frozen ")
            or filename.startswith(default_excluded_prefixes())  # found at the first call site, not at start-up
            or WRAPPER_FILENAME_MARKER in filename
        )
        if len(_is_library_code) > 100_000:  # bound memory in programs that generate code
            _is_library_code.clear()
        _is_library_code[code] = result
        return result


def _wrapper_machinery(code: CodeType) -> bool:
    return code.co_filename.startswith(_WRAPT_PREFIX) or WRAPPER_FILENAME_MARKER in code.co_filename


def find_call_site(frame: FrameType | None = None, user_calls_only: bool = False) -> tuple[str, int, str] | None:
    """``(file, line, function)`` of the first user-code frame above ``frame`` (default: the caller).

    ``None`` when library code makes the access while being imported (pandas
    reading the time zone database under ``import pandas``): that is the
    library setting itself up, not the program accessing data.  With
    ``user_calls_only``, also ``None`` when library code made the call
    (``tempfile`` calling ``os.open``): only the user's own calls count.
    """
    if frame is None:
        frame = sys._getframe(1)
    if user_calls_only:
        while frame is not None and _wrapper_machinery(frame.f_code):
            frame = frame.f_back
        if frame is None or _library(frame.f_code):
            return None
    first = frame
    importing = False
    while frame is not None and _library(frame.f_code):
        if frame.f_code.co_filename in _IMPORT_MACHINERY:
            importing = True
        frame = frame.f_back
    if importing:
        return None
    if frame is None:
        # No user frame (a library-only thread, say): name the nearest caller outside otel-audit.
        frame = first
        while frame.f_back is not None and frame.f_code.co_filename.startswith(_OWN_PREFIX):
            frame = frame.f_back
    code = frame.f_code
    return safe_text(code.co_filename), frame.f_lineno or 0, code.co_name
