"""fsspec: opens, reads, writes, deletes, copies and listings through any fsspec filesystem.

fsspec is how pandas, datasets, Hugging Face and others reach remote stores (HTTP, S3,
GCS, the memory filesystem...).  Each filesystem instance made while instrumented gets
audited versions of the methods below (instance attributes, made right after fsspec made
the instance and mirrored its async methods), recorded as
``fsspec.<FileSystemClass>.<method>`` with the full URL of the path
(``memory://...``, ``http://...``, a local path as ``file://``), one record per path for
a list of paths:

* read: ``open`` (by mode), ``cat_file``, ``cat``, ``read_text``, ``read_bytes``, ``get_file``, ``get``;
* write: ``open`` (``w``, ``a``, ``x``, ``+``), ``pipe_file``, ``pipe``, ``write_text``,
  ``write_bytes``, ``put_file``, ``put`` (the remote path);
* copy and move: ``cp_file``/``copy`` (read of the source, write of the destination),
  ``mv`` (delete of the source, write of the destination);
* delete ``rm_file``, ``rm`` and list ``ls``, ``find``, ``glob``, ``walk``: only when the
  user's own code calls them (as at the os level: libraries list and clean their caches
  on their own).

What a call does inside (``read_text`` opening the file, ``cat`` reading each file) is
folded into it; a file object from ``open`` reads later without further records.
``fsspec.open(url)`` makes a lazy ``OpenFile``: the record is made when it is opened
(``with fsspec.open(url) as f``), by the filesystem's ``open``.  Filesystems made before
``instrument()`` are not audited; those made while instrumented keep pass-through
wrappers after ``uninstrument()``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import wrapt

from otel_audit import schema
from otel_audit.hooks._base import AccessPoint, action_of_mode, argument, with_action
from otel_audit.resources import ResourcePolicy, fspath_or_none

READ, WRITE, DELETE, LIST = schema.ACTION_READ, schema.ACTION_WRITE, schema.ACTION_DELETE, schema.ACTION_LIST
_AUDITED = "_otel_audit_audited"  # set on a filesystem instance once its methods are audited


class Method(NamedTuple):
    action: str
    position: int = 0
    name: str = "path"
    then: tuple | None = None  # a second path: (position, name, action) (a copy's destination)
    mode: tuple | None = None  # (position, name, default) of an open mode


METHODS: dict[str, Method] = {
    "open": Method(READ, mode=(1, "mode", "rb")),
    "cat_file": Method(READ), "cat": Method(READ), "read_text": Method(READ), "read_bytes": Method(READ),
    "get_file": Method(READ, 0, "rpath"), "get": Method(READ, 0, "rpath"),
    "pipe_file": Method(WRITE), "pipe": Method(WRITE), "write_text": Method(WRITE), "write_bytes": Method(WRITE),
    "put_file": Method(WRITE, 1, "rpath"), "put": Method(WRITE, 1, "rpath"),
    "cp_file": Method(READ, 0, "path1", then=(1, "path2", WRITE)),
    "copy": Method(READ, 0, "path1", then=(1, "path2", WRITE)),
    "mv": Method(DELETE, 0, "path1", then=(1, "path2", WRITE)),
    "rm_file": Method(DELETE), "rm": Method(DELETE),
    "ls": Method(LIST), "find": Method(LIST), "glob": Method(LIST), "walk": Method(LIST),
}
USER_CALLS_ONLY = (DELETE, LIST)  # as at the os level


def _url(fs: Any, path: Any) -> str | None:
    text = fspath_or_none(path)
    if text is None:
        return None
    try:  # the filesystem's own canonical path (memory: "data/a" is "/data/a"; local: absolute), as a URL
        return fs.unstrip_protocol(fs._strip_protocol(text))
    except Exception:  # a filesystem that cannot say: the path as given
        return text


def _describe_paths(policy: ResourcePolicy, fs: Any, target: Any, action: str) -> list[dict]:
    urls = (_url(fs, one) for one in (target if isinstance(target, (list, tuple)) else (target,)))
    described = (with_action(policy.describe(url), action) for url in urls if url is not None)
    return [attributes for attributes in described if attributes is not None]  # excluded: no record


def _describer(fs: Any, method: Method):
    def describe(policy: ResourcePolicy, instance, args: tuple, kwargs: dict) -> list[dict]:
        action = method.action
        if method.mode is not None:
            action = action_of_mode(argument(args, kwargs, *method.mode), method.action)
        accesses = _describe_paths(policy, fs, argument(args, kwargs, method.position, method.name), action)
        if method.then is not None:
            position, name, then_action = method.then
            accesses += _describe_paths(policy, fs, argument(args, kwargs, position, name), then_action)
        return accesses

    return describe


def _audit_instance(point: AccessPoint, fs: Any) -> None:
    """Give a filesystem instance audited versions of :data:`METHODS` (once: instances are cached)."""
    if vars(fs).get(_AUDITED):
        return
    kind = type(fs).__name__
    for name, method in METHODS.items():
        bound = getattr(fs, name, None)
        if bound is None:
            continue
        wrapper = point.audited(f"fsspec.{kind}.{name}", None, _describer(fs, method),
                                user_calls_only=method.action in USER_CALLS_ONLY)
        setattr(fs, name, wrapt.FunctionWrapper(bound, wrapper))
    fs.__dict__[_AUDITED] = True


def _patch_spec(point: AccessPoint, module) -> None:
    def make_instance(wrapped, cls, args, kwargs):
        fs = wrapped(*args, **kwargs)
        if point.installed:
            try:
                _audit_instance(point, fs)
            except Exception as exc:  # the filesystem works, unaudited; said once
                from otel_audit import diagnostics

                diagnostics.report_internal_error(f"auditing an fsspec filesystem ({type(fs).__name__})", exc)
        return fs

    point.wrap(module._Cached, "__call__", make_instance)


ACCESS_POINT = AccessPoint("fsspec", {"fsspec.spec": _patch_spec})
