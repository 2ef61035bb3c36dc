"""The os level: deleting, moving, copying and listing files, and opening them without ``open``.

Only calls the user's own code makes are recorded: ``os.remove`` in the user's
script is, the ``os.unlink`` that ``tempfile`` or a library makes on its own is
not (libraries create, rename and delete scratch files all the time, and the
trail of a training script must stay about its data).  What an audited call does
inside is folded into it: ``shutil.rmtree`` is one record for the tree, not one per
file; ``pathlib.Path.unlink`` is not also ``os.unlink``.

* delete: ``os.remove``/``unlink``/``rmdir``, ``shutil.rmtree``, ``Path.unlink``/``rmdir``;
* move: ``os.rename``/``replace``, ``shutil.move``, ``Path.rename``/``replace`` give two
  records, ``delete`` of the source and ``write`` of the destination (both findable);
* copy: ``shutil.copyfile``/``copy``/``copy2``/``copytree``, ``read`` of the source and
  ``write`` of the destination (a destination directory: the file made in it);
* list: ``os.listdir``/``scandir``/``walk``, ``Path.iterdir``, and with the pattern as
  given, made absolute: ``Path.glob``/``rglob`` (``rglob("*.csv")`` as ``<dir>/**/*.csv``),
  ``glob.glob``/``iglob``;
* open: ``os.open`` (write when its flags write or create), ``io.FileIO`` (write when its
  mode has ``w``, ``a``, ``x`` or ``+``).  ``io.FileIO`` is patched in its own ``__init__``,
  so it stays the same class; the ``FileIO`` that ``open()`` makes is ``open()``'s record.

Generators (``os.walk``, ``Path.iterdir``, ``glob.iglob``...) are recorded when they are
called; an error raised later while iterating is not in the record.  A path given
relative to ``dir_fd`` is resolved through ``/proc/self/fd`` where there is one.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from otel_audit import schema
from otel_audit.hooks._base import AccessPoint, action_of_mode, argument, with_action
from otel_audit.resources import ResourcePolicy, fspath_or_none

READ, WRITE, DELETE, LIST = schema.ACTION_READ, schema.ACTION_WRITE, schema.ACTION_DELETE, schema.ACTION_LIST
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _at_dir_fd(path: Any, kwargs: dict) -> Any:
    """A path relative to ``dir_fd=`` as the absolute path it names (Linux), else unchanged."""
    dir_fd = kwargs.get("dir_fd")
    text = fspath_or_none(path)
    if dir_fd is None or text is None or os.path.isabs(text):
        return path
    try:
        return os.path.join(os.readlink(f"/proc/self/fd/{int(dir_fd)}"), text)
    except (OSError, ValueError, TypeError):
        return None  # no way to tell which file: not a named resource we can vouch for


class OnePath(NamedTuple):
    """A call on one path (the Path itself for a method: ``position`` -1)."""

    action: str
    position: int
    name: str
    default: Any = None  # os.listdir() lists "."

    def describe(self, policy: ResourcePolicy, instance, args, kwargs):
        target = instance if self.position < 0 else argument(args, kwargs, self.position, self.name, self.default)
        if self.action == LIST and isinstance(target, int):
            return None  # os.listdir(fd): names no path
        return with_action(policy.describe(_at_dir_fd(target, kwargs)), self.action)


class TwoPaths(NamedTuple):
    """A move or copy: the source (deleted or read) and the destination (written)."""

    source_action: str  # delete for a move, read for a copy
    into_directory: bool = True  # a destination that is a directory receives the source's name

    def describe(self, policy: ResourcePolicy, instance, args, kwargs):
        if instance is not None:  # Path.rename(target)
            source, destination = instance, argument(args, kwargs, 0, "target")
        else:
            source, destination = argument(args, kwargs, 0, "src"), argument(args, kwargs, 1, "dst")
        source_path, destination_path = fspath_or_none(source), fspath_or_none(destination)
        if self.into_directory and source_path and destination_path and os.path.isdir(destination_path):
            destination = os.path.join(destination_path, os.path.basename(source_path.rstrip(os.sep)))
        return [with_action(policy.describe(source), self.source_action),
                with_action(policy.describe(destination), WRITE)]


class OpenFlags(NamedTuple):
    """``os.open``: a write when its flags write or create."""

    flags_position: int = 1

    def describe(self, policy: ResourcePolicy, instance, args, kwargs):
        flags = argument(args, kwargs, self.flags_position, "flags", 0)
        action = WRITE if isinstance(flags, int) and flags & _WRITE_FLAGS else READ
        return with_action(policy.describe(_at_dir_fd(argument(args, kwargs, 0, "path"), kwargs)), action)


class FileMode(NamedTuple):
    """``io.FileIO(file, mode)``: a write when the mode writes; a file descriptor names no path."""

    def describe(self, policy: ResourcePolicy, instance, args, kwargs):
        file, mode = args[0], args[1]
        if isinstance(file, int):
            return None
        return with_action(policy.describe(file), action_of_mode(mode))


class PathPattern(NamedTuple):
    """``Path.glob``/``rglob``: the pattern under the Path is the resource listed."""

    prefix: str = ""  # rglob("*.csv") is glob("**/*.csv")

    def describe(self, policy: ResourcePolicy, instance, args, kwargs):
        pattern = argument(args, kwargs, 0, "pattern")
        if not isinstance(pattern, str) or not isinstance(instance, os.PathLike):
            return None
        return with_action(policy.describe(os.path.join(os.fspath(instance), self.prefix + pattern)), LIST)


# module or class -> {name: what it does}; "self" marks a method whose path is the Path itself
FUNCTIONS: dict[str, dict[str, tuple]] = {
    "os": {
        "remove": OnePath(DELETE, 0, "path"),
        "unlink": OnePath(DELETE, 0, "path"),
        "rmdir": OnePath(DELETE, 0, "path"),
        "rename": TwoPaths(DELETE, into_directory=False),
        "replace": TwoPaths(DELETE, into_directory=False),
        "listdir": OnePath(LIST, 0, "path", "."),
        "scandir": OnePath(LIST, 0, "path", "."),
        "walk": OnePath(LIST, 0, "top"),
        "open": OpenFlags(),
    },
    "shutil": {
        "rmtree": OnePath(DELETE, 0, "path"),
        "move": TwoPaths(DELETE),
        "copyfile": TwoPaths(READ, into_directory=False),
        "copy": TwoPaths(READ),
        "copy2": TwoPaths(READ),
        "copytree": TwoPaths(READ, into_directory=False),
    },
    "glob": {
        "glob": OnePath(LIST, 0, "pathname"),
        "iglob": OnePath(LIST, 0, "pathname"),
    },
}

PATH_METHODS: dict[str, tuple] = {
    "unlink": OnePath(DELETE, -1, "self"),
    "rmdir": OnePath(DELETE, -1, "self"),
    "rename": TwoPaths(DELETE, into_directory=False),
    "replace": TwoPaths(DELETE, into_directory=False),
    "iterdir": OnePath(LIST, -1, "self"),
    "glob": PathPattern(),
    "rglob": PathPattern("**/"),
}


def _patcher(module_name: str):
    def patch(point: AccessPoint, module) -> None:
        for name, spec in FUNCTIONS[module_name].items():
            if hasattr(module, name):
                point.wrap(module, name, point.audited(f"{module_name}.{name}", None, spec.describe,
                                                       user_calls_only=True))

    return patch


def _patch_pathlib(point: AccessPoint, module) -> None:
    for name, spec in PATH_METHODS.items():
        if name in vars(module.Path):
            point.wrap(module.Path, name, point.audited(f"pathlib.Path.{name}", None, spec.describe,
                                                        user_calls_only=True))


def _patch_io(point: AccessPoint, module) -> None:
    point.wrap_type_init(module.FileIO, point.audited("io.FileIO", None, FileMode().describe, user_calls_only=True))


ACCESS_POINT = AccessPoint("os", {**{name: _patcher(name) for name in FUNCTIONS}, "pathlib": _patch_pathlib,
                                  "io": _patch_io})
