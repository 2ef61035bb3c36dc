"""What every access point shares: patching on import, exact restore, the audited-call wrapper.

An :class:`AccessPoint` names the modules it patches and, for each, a function
that patches it.  ``install`` registers wrapt post-import hooks, so a library
is patched when the user's code imports it, never imported by us.
``uninstall`` puts back the exact objects it replaced (post-import hooks
cannot be unregistered, so they stay but do nothing while uninstalled).

:meth:`AccessPoint.audited` builds the one wrapper all hooks use: it asks the
hook's ``describe`` what resource the call touches (or resources: a list of
paths, a copy's source and destination), runs the call untouched, and emits
one record per resource with the outcome.  While it runs, the accesses the
library makes internally are not recorded (the outermost call is the one the
user made).
"""

from __future__ import annotations

import importlib
import os
import stat
import sys
import threading
import time
from types import FunctionType, ModuleType
from typing import Any, Callable, NamedTuple

import wrapt

from otel_audit import diagnostics, schema
from otel_audit.callsite import WRAPPER_FILENAME_MARKER, find_call_site
from otel_audit.context import in_audited_call
from otel_audit.recorder import AuditRecorder, ErrorClassifier, classify_exception
from otel_audit.resources import ResourcePolicy, fspath_or_none, printable

# describe(policy, instance, args, kwargs) -> attributes of the resource and action, a list of them (one
# record each: the call touches several resources), or None (not audited)
Describe = Callable[[ResourcePolicy, Any, tuple, dict], "dict | list[dict] | None"]
# after(attributes, result): attributes known only once the call returned (file.size, request id);
# may return (outcome, error.type) when the call returned but this resource's access failed (one key
# of an S3 DeleteObjects)
After = Callable[[dict, Any], "tuple[str, str] | None"]

_MISSING = object()
_hooked_modules: set[tuple[str, str]] = set()
_hook_lock = threading.Lock()


def argument(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    """A call's argument by position or keyword."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


class _ModuleByName:
    """Unpickles as ``importlib.import_module(name)``: a module reference needing only the stdlib."""

    def __init__(self, name: str):
        self.name = name

    def __reduce__(self):
        return importlib.import_module, (self.name,)


class _BoundAuditedFunction(wrapt.BoundFunctionWrapper):
    """A patched method as got from its class or an instance: pickles as that ``getattr``, as a method does."""

    def __reduce_ex__(self, protocol):
        parent = self._self_parent
        holder = self._self_instance if self._self_instance is not None else parent._self_patched_owner
        return getattr, (holder, parent._self_patched_attribute)


class AuditedFunction(wrapt.FunctionWrapper):
    """A patched function that pickles by reference, as the original did.

    It unpickles as ``getattr(<module or class>, <name>)``: whatever stands
    there in the receiving process, with no reference to otel-audit in the
    pickle (a process without otel-audit can load it).
    """

    __bound_function_wrapper__ = _BoundAuditedFunction

    def __init__(self, wrapped: Any, wrapper: Callable, owner: Any, attribute: str):
        super().__init__(wrapped, wrapper)
        self._self_patched_owner = owner
        self._self_patched_attribute = attribute

    def __reduce_ex__(self, protocol):
        owner = self._self_patched_owner
        holder = _ModuleByName(owner.__name__) if isinstance(owner, ModuleType) else owner
        return getattr, (holder, self._self_patched_attribute)


def _filed_under_library(wrapper: Callable, owner: Any) -> Callable:
    """``wrapper`` with its code filed under the package directory of the library it wraps.

    The wrapper's frame sits between the caller and the library.  Libraries that
    aim a warning at "the first frame outside my package" (pandas'
    ``find_stack_level``, behind nearly every pandas warning) would stop at it:
    the warning would name ``otel_audit/hooks/_base.py`` instead of the caller's
    line, so warning filters by module, the once-per-location registry and
    ``pytest.warns``/stacklevel checks would all see otel-audit.  Filed there
    (under a name that exists nowhere, saying where the code is), the frame
    counts as the library's own.  Warnings with a fixed ``stacklevel`` from the
    wrapped function itself still land on this frame: no Python wrapper avoids that.
    """
    code = getattr(wrapper, "__code__", None)
    module = owner if isinstance(owner, ModuleType) else sys.modules.get(getattr(owner, "__module__", None) or "")
    package = sys.modules.get(module.__name__.partition(".")[0]) if module is not None else None
    package_file = getattr(package, "__file__", None)
    if not isinstance(wrapper, FunctionType) or code is None or not package_file or not hasattr(package, "__path__"):
        return wrapper  # builtins, io: no package directory to belong to
    filename = os.path.join(os.path.dirname(package_file), f"{WRAPPER_FILENAME_MARKER} from {__name__}>")
    filed = FunctionType(code.replace(co_filename=filename), wrapper.__globals__, wrapper.__name__,
                         wrapper.__defaults__, wrapper.__closure__)
    filed.__kwdefaults__ = wrapper.__kwdefaults__
    filed.__qualname__ = wrapper.__qualname__
    return filed


def with_action(attributes: dict | None, action: str) -> dict | None:
    """``attributes`` (when a resource was named) with ``audit.action`` set: for a describe whose action varies."""
    if attributes is not None:
        attributes[schema.AUDIT_ACTION] = action
    return attributes


def nothing_after(attributes: dict, result: Any) -> None:
    """An ``after`` that adds nothing: the resource is a directory or a remote name, with no one size."""


def record_file_size(attributes: dict, result: Any) -> None:
    """The default ``after``: ``file.size`` of a local file that was read (a directory has none)."""
    path = attributes.get(schema.FILE_PATH)
    if path is not None and attributes.get(schema.AUDIT_ACTION) == schema.ACTION_READ:
        try:
            status = os.stat(path)
        except OSError:  # gone already, or a name we could not export verbatim
            return
        if stat.S_ISREG(status.st_mode):
            attributes[schema.FILE_SIZE] = status.st_size


_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE
_flags_offset: int | None = None


def _is_immutable_type(owner: Any) -> bool:
    return isinstance(owner, type) and bool(owner.__flags__ & _IMMUTABLE_TYPE)


class _assignable:
    """``with _assignable(cls):`` lets ``setattr(cls, ...)`` replace a method of an immutable C type.

    pyarrow's Cython classes and ``numpy.ndarray`` are immutable types: their methods, where
    pyarrow's lazy scans and its filesystems read and write, cannot be replaced the usual way.
    Only the flag that forbids it is lifted, for one assignment, under the GIL; ``type.__setattr__``
    itself then does the assignment and everything that goes with it (method caches, subclasses),
    as for any class.  Only on CPython, and only where the flags word is found where the type
    layout puts it (checked against ``cls.__flags__``): elsewhere the ``TypeError`` stands, the
    hook reports that it could not patch, and says its accesses are not audited.
    """

    def __init__(self, owner: Any):
        self._flags = None
        if _is_immutable_type(owner):
            global _flags_offset
            import ctypes  # only when a C type is patched: not at start-up

            if _flags_offset is None:
                # PyTypeObject: ob_refcnt, ob_type, ob_size, then 18 pointer-sized fields before tp_flags
                _flags_offset = 21 * ctypes.sizeof(ctypes.c_void_p)
            flags = ctypes.c_ulong.from_address(id(owner) + _flags_offset)
            if sys.implementation.name != "cpython" or flags.value != owner.__flags__:
                raise TypeError(f"cannot patch {owner.__qualname__}: an immutable type of an unknown layout")
            self._flags = flags

    def __enter__(self) -> None:
        if self._flags is not None:
            self._flags.value &= ~_IMMUTABLE_TYPE

    def __exit__(self, *exc: Any) -> None:
        if self._flags is not None:
            self._flags.value |= _IMMUTABLE_TYPE


def hook_failed(recorder: AuditRecorder | None, hook: str, exc: BaseException) -> None:
    """The ``hook_failed`` lifecycle record: ``hook`` (and the module) could not patch, its accesses are NOT audited."""
    if recorder is not None:
        recorder.lifecycle(schema.LIFECYCLE_HOOK_FAILED, {
            schema.AUDIT_HOOK: hook, schema.AUDIT_LIFECYCLE_DETAIL: printable(f"{type(exc).__name__}: {exc}")})


class AccessPoint:
    """One library's patches.  ``patchers`` maps a module name to ``patch(point, module)``."""

    def __init__(self, name: str, patchers: dict[str, Callable[["AccessPoint", Any], None]]):
        self.name = name
        self._patchers = patchers
        self._recorder: AuditRecorder | None = None
        self._originals: list[tuple[Any, str, Any]] = []
        self._lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------
    @property
    def installed(self) -> bool:
        return self._recorder is not None

    @property
    def recorder(self) -> AuditRecorder | None:
        """The recorder while installed, else ``None``."""
        return self._recorder

    def install(self, recorder: AuditRecorder) -> None:
        self._recorder = recorder
        for module_name in self._patchers:
            key = (self.name, module_name)
            with _hook_lock:
                first = key not in _hooked_modules
                _hooked_modules.add(key)
            if first:
                wrapt.register_post_import_hook(self._make_import_hook(module_name), module_name)
            elif module_name in sys.modules:
                self._on_import(module_name, sys.modules[module_name])

    def uninstall(self) -> None:
        with self._lock:
            self._recorder = None
            for owner, attribute, original in reversed(self._originals):
                try:
                    with _assignable(owner):
                        if original is _MISSING:
                            delattr(owner, attribute)
                        else:
                            setattr(owner, attribute, original)
                except Exception as exc:
                    diagnostics.report_internal_error(f"restoring {attribute} ({self.name})", exc)
            self._originals.clear()

    def _make_import_hook(self, module_name: str) -> Callable[[Any], None]:
        def on_import(module: Any) -> None:
            self._on_import(module_name, module)

        return on_import

    def _on_import(self, module_name: str, module: Any) -> None:
        # Runs inside the user's import statement: an exception here would make
        # their import fail, so none may escape.
        try:
            with self._lock:
                if self._recorder is not None:
                    self._patchers[module_name](self, module)
        except Exception as exc:
            diagnostics.report(
                f"could not patch {module_name} ({type(exc).__name__}: {exc}); its accesses are NOT audited",
                key=f"patch:{module_name}",
            )
            hook_failed(self._recorder, f"{self.name} ({module_name})", exc)

    def wrap(self, owner: Any, attribute: str, wrapper: Callable) -> None:
        """Replace ``owner.attribute`` by a wrapt wrapper, remembering the exact original.

        A module-level function is also replaced where its ``__module__`` says
        it lives (``torch.load`` in ``torch.serialization``), by the same
        wrapper object: pickle and cloudpickle look a function up by its
        ``__module__``/``__qualname__`` and accept it only if they find that
        very object, so ``pool.map(pd.read_csv, files)`` keeps working.
        """
        if self._replaced(owner, attribute):
            return
        places = [(owner, attribute, vars(owner).get(attribute, _MISSING))]
        wrapper = _filed_under_library(wrapper, owner)
        if _is_immutable_type(owner):  # a method of a C type (pyarrow's Dataset, numpy.ndarray.tofile)
            function = AuditedFunction(vars(owner)[attribute], wrapper, owner, attribute)
            with _assignable(owner):
                setattr(owner, attribute, function)
        else:
            function = wrapt.wrap_object(owner, attribute, AuditedFunction, (wrapper, owner, attribute))
        if isinstance(owner, ModuleType) and not isinstance(function.__wrapped__, type):
            # (a class, a C type whose constructor cannot be patched, is replaced under its public
            # name only: its home module's own code keeps the real class for isinstance and ABC
            # registration, as _pyio does with _io.FileIO)
            original = function.__wrapped__
            home = sys.modules.get(getattr(original, "__module__", None) or "")
            name = getattr(original, "__qualname__", "")
            if home is not None and home is not owner and "." not in name and vars(home).get(name) is original:
                places.append((home, name, original))
                setattr(home, name, function)
        self._originals.extend(places)

    def _replaced(self, owner: Any, attribute: str) -> bool:
        """``owner.attribute`` is replaced already (a module patched again is not wrapped twice)."""
        return any(o is owner and a == attribute for o, a, _ in self._originals)

    def wrap_type_init(self, cls: type, wrapper: Callable) -> None:
        """Record the constructor of a C type (``io.FileIO``) by giving the type a Python ``__init__``.

        The type stays itself (``isinstance``, ``type(f) is io.FileIO``, ABC registrations, subclasses),
        which no replacement of its name keeps.  The price: every instance the interpreter makes goes
        through this ``__init__`` (``open()`` makes a ``FileIO``), so it is kept to the cheapest check
        there is.  An instance made by the C function an audited wrapper called (``open()`` itself,
        excluded or recorded) is that call's, and passes straight through; any other call goes to
        ``wrapper`` (a :meth:`audited` wrapper) as if the constructor were a function.  The original
        signature (for ``inspect``) is kept; the type's ``__init__`` slot is restored exactly by
        :meth:`uninstall`.
        """
        if self._replaced(cls, "__init__"):
            return
        original = vars(cls)["__init__"]  # a C slot wrapper
        getframe, made_inside = sys._getframe, _AUDITED_WRAPPER_CODE

        def __init__(self, file, mode="r", closefd=True, opener=None):
            try:
                if getframe(1).f_code is made_inside:
                    return original(self, file, mode, closefd, opener)
            except ValueError:  # made by C code with no Python frame at all: not a user's call
                return original(self, file, mode, closefd, opener)
            wrapper(original.__get__(self), self, (file, mode, closefd, opener), {})

        # wrapper machinery, not the caller's code (see callsite); named and documented as the original
        __init__.__code__ = __init__.__code__.replace(co_filename=f"{WRAPPER_FILENAME_MARKER} from {__name__}>")
        __init__.__qualname__, __init__.__doc__ = f"{cls.__name__}.__init__", original.__doc__
        with _assignable(cls):
            setattr(cls, "__init__", __init__)
        self._originals.append((cls, "__init__", original))

    # -- the audited call --------------------------------------------------
    def audited(
        self,
        api: str | None,
        action: str | None,
        describe: Describe,
        *,
        after: After | None = None,
        classify_error: ErrorClassifier = classify_exception,
        user_calls_only: bool = False,
        list_files: bool = False,
    ) -> Callable:
        """A wrapt wrapper recording each outermost call of ``api`` as one access (per resource).

        ``api`` and ``action`` are fixed for the wrapped function, or ``None``
        when ``describe`` sets them (``open``'s mode decides read or write; one
        botocore method serves every S3 operation).  ``user_calls_only``: record
        only calls made by user code itself (``os.listdir`` in the user's script,
        not the one ``tempfile`` makes on its own): for os-level calls, which
        libraries make all the time.  ``list_files``: the local files the call
        read or wrote inside (through any audited API) go into the record as
        ``audit.resource.files`` instead of nowhere: ``from_pretrained`` of a
        directory names the config and weight shards it actually opened.
        """
        point = self
        where = api or self.name

        def wrapper(wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
            recorder = point._recorder
            if recorder is None:
                return wrapped(*args, **kwargs)
            outer = in_audited_call.get()
            if outer is not False:  # True, or the (maybe empty) list of an outer call's files
                if outer is not True and not user_calls_only:  # the outer call lists the files it touched
                    _add_touched_files(outer, describe, recorder.policy, instance, args, kwargs)
                return wrapped(*args, **kwargs)
            try:
                if user_calls_only:  # asked first: most such calls are libraries', and cheap to tell
                    caller = sys._getframe().f_back
                    call_site = find_call_site(caller, True) if caller is not None else None
                    described = None if call_site is None else describe(recorder.policy, instance, args, kwargs)
                else:
                    call_site = None
                    described = describe(recorder.policy, instance, args, kwargs)
                if described is None:  # the fast path: not a named resource, or excluded
                    accesses = None
                else:
                    accesses = [described] if type(described) is dict else [a for a in described if a] or None
                    if accesses is not None and call_site is None:
                        # No Python caller at all: the interpreter itself (printing a
                        # traceback's source lines) opens the file, not the program.
                        caller = sys._getframe().f_back
                        call_site = find_call_site(caller) if caller is not None else None
                        if call_site is None:
                            accesses = None
                    for attributes in accesses or ():
                        if api is not None:
                            attributes[schema.AUDIT_API] = api
                        if action is not None:
                            attributes[schema.AUDIT_ACTION] = action
                        attributes[schema.CODE_FILE_PATH] = call_site[0]
                        attributes[schema.CODE_LINE_NUMBER] = call_site[1]
                        attributes[schema.CODE_FUNCTION_NAME] = call_site[2]
            except Exception as exc:
                diagnostics.report_internal_error(where, exc)
                accesses = None
            if accesses is None:
                return wrapped(*args, **kwargs)
            recorder.admit(accesses)  # fail-closed, and the policy: PermissionError before the access happens

            start_ns = time.time_ns()
            touched = [] if list_files else None
            token = in_audited_call.set(True if touched is None else touched)
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                in_audited_call.reset(token)
                for attributes in accesses:
                    if touched is not None:
                        _list_touched_files(attributes, touched)
                    recorder.emit_error(attributes, start_ns=start_ns, error=exc, classify_error=classify_error)
                raise
            in_audited_call.reset(token)
            for attributes in accesses:
                if touched is not None:
                    _list_touched_files(attributes, touched)
                verdict = None
                try:
                    verdict = (after or record_file_size)(attributes, result)
                except Exception as exc:
                    diagnostics.report_internal_error(where, exc)
                if verdict is None:
                    recorder.emit(attributes, start_ns=start_ns)
                else:
                    recorder.emit(attributes, start_ns=start_ns, outcome=verdict[0], error_type=verdict[1])
            return result

        return wrapper


# the code of every audited wrapper that is not filed under a library: builtins.open's, io.open's
_AUDITED_WRAPPER_CODE = AccessPoint("", {}).audited(None, None, lambda *a: None).__code__


MAX_LISTED_FILES = 64


def _add_touched_files(touched: list, describe: Describe, policy: ResourcePolicy, instance, args, kwargs) -> None:
    """An access made inside a call that lists its files: its local path, once, into that list."""
    if len(touched) > MAX_LISTED_FILES:
        return
    try:
        described = describe(policy, instance, args, kwargs)
        for attributes in [described] if isinstance(described, dict) else described or ():
            path = attributes.get(schema.FILE_PATH) if attributes else None
            if path is not None and path not in touched:
                touched.append(path)
    except Exception as exc:  # the call goes on; its record just lists fewer files
        diagnostics.report_internal_error("listing the files of an audited call", exc)


def _list_touched_files(attributes: dict, touched: list) -> None:
    """``audit.resource.files``: the touched files, relative to the resource's directory when inside it."""
    base = attributes.get(schema.FILE_PATH)
    prefix = base.rstrip(os.sep) + os.sep if base else None
    names = [path[len(prefix):] if prefix and path.startswith(prefix) else path
             for path in touched[:MAX_LISTED_FILES] if path != base]  # an inner call naming the same directory
    if len(touched) > MAX_LISTED_FILES:
        names.append(f"...[more than {MAX_LISTED_FILES} files]")
    attributes[schema.AUDIT_RESOURCE_FILES] = tuple(names)


class FileArgument(NamedTuple):
    """Where a function's file argument is, and what the call does to it."""

    action: str
    position: int
    name: str
    suffix: str = ""  # appended to a path that does not end with it, as the function does (numpy.save: .npy)
    mode: "tuple[int, str, str] | None" = None  # (position, name, default) of a mode argument: "w", "a", "+" write


WRITE_MODE_CHARS = frozenset("wax+")


# numpy.memmap's long mode names, and its copy-on-write "c" (changes stay in memory)
_NAMED_MODES = {"readonly": schema.ACTION_READ, "copyonwrite": schema.ACTION_READ, "c": schema.ACTION_READ,
                "readwrite": schema.ACTION_WRITE, "write": schema.ACTION_WRITE}


def action_of_mode(mode: Any, read: str = schema.ACTION_READ) -> str:
    """``write`` for an ``open``-style mode that writes (``w``, ``a``, ``x``, ``+``), else ``read``."""
    if not isinstance(mode, str):
        return read
    named = _NAMED_MODES.get(mode)
    if named is not None:
        return named
    return schema.ACTION_WRITE if WRITE_MODE_CHARS.intersection(mode) else read


def on_filesystem(filesystem: Any, target: Any) -> Any:
    """A path given with a ``filesystem=`` argument (pyarrow, pandas), as the URL it names on that filesystem."""
    path = fspath_or_none(target)
    if path is None or "://" in path:
        return target
    unstrip = getattr(filesystem, "unstrip_protocol", None)  # an fsspec filesystem
    if callable(unstrip):
        return unstrip(path)
    kind = getattr(filesystem, "type_name", None)  # a pyarrow.fs filesystem: "local", "s3", "gcs", "hdfs"...
    if kind == "subtree":  # pyarrow.fs.SubTreeFileSystem: the path is under its base path, on its base filesystem
        return on_filesystem(filesystem.base_fs, f"{filesystem.base_path.rstrip('/')}/{path.lstrip('/')}")
    if not isinstance(kind, str) or kind == "local":
        return path
    return f"{kind.removeprefix('py::fsspec+')}://{path.lstrip('/')}"


def describe_file_argument(policy: ResourcePolicy, where: FileArgument, args: tuple, kwargs: dict,
                           api_type: str) -> "dict | list[dict] | None":
    """The resource(s) a call's file argument names: a path or URL, or a list or tuple of them (one record each)."""
    target = argument(args, kwargs, where.position, where.name)
    targets = target if isinstance(target, (list, tuple)) else (target,)
    filesystem = kwargs.get("filesystem")
    accesses = []
    for one in targets:
        if filesystem is not None:
            one = on_filesystem(filesystem, one)
        if where.suffix:
            path = fspath_or_none(one)
            if path is not None and "://" not in path and not path.endswith(where.suffix):
                one = path + where.suffix
        attributes = policy.describe(one, api_type)
        if attributes is not None:
            if where.mode is not None:
                attributes[schema.AUDIT_ACTION] = action_of_mode(argument(args, kwargs, *where.mode), where.action)
            accesses.append(attributes)
    return accesses


def _wrap_constructor(point: AccessPoint, cls: type, api: str, action: str | None, describe: Describe,
                      describe_new: Describe) -> bool:
    """A class is patched in its own ``__init__`` (or ``__new__``), so that it stays itself: its instances
    pickle, ``type(x) is cls`` holds, and subclasses (the user's too) are recorded when made.  False for
    class whose constructor is not Python code (a C, Cython or Rust type): then its name is wrapped
    instead (such objects do not pickle anyway)."""
    method = "__init__" if "__init__" in vars(cls) else "__new__" if "__new__" in vars(cls) else None
    defined = vars(cls).get(method)
    if isinstance(defined, staticmethod):
        defined = defined.__func__
    if not isinstance(defined, FunctionType):  # a C type's slot (Rust, Cython): only the name can be wrapped
        return False
    try:
        point.wrap(cls, method, point.audited(api, action, describe if method == "__init__" else describe_new))
    except TypeError:  # cannot set attributes of an immutable (C) type
        return False
    return True


def file_functions_access_point(name: str, modules: dict[str, dict[str, tuple]], api_type: str) -> AccessPoint:
    """The access point of a library whose functions take a file (see :func:`file_functions_patchers`)."""
    return AccessPoint(name, file_functions_patchers(modules, api_type))


def file_functions_patchers(modules: dict[str, dict[str, tuple]], api_type: str, *,
                            after: After | None = None) -> dict[str, Callable]:
    """``{module: patch}`` for a library whose functions take a file: ``{module: {function: FileArgument}}``.

    Each function (or class: calling it opens the file) is recorded as ``<module>.<function>`` with the
    path or URL it was given, one record per path when it was given a list of them (a buffer or bytes
    are not a named resource: not recorded).  A key ``"module:Class"`` names methods of that class
    (positions count after ``self``), recorded as ``<module>.<Class>.<method>``.  A function a version of
    the library lacks is skipped.  ``after`` is each call's ``after`` (see :meth:`AccessPoint.audited`).
    """

    def patcher(key: str, functions: dict[str, tuple]) -> Callable[[AccessPoint, Any], None]:
        module_name, _, class_name = key.partition(":")
        prefix = f"{module_name}.{class_name}" if class_name else module_name

        def patch(point: AccessPoint, module: Any) -> None:
            owner = getattr(module, class_name, None) if class_name else module
            if owner is None:
                return
            for function, spec in functions.items():
                if function not in vars(owner) and (class_name or not hasattr(owner, function)):
                    continue
                where = FileArgument(*spec)

                def describe(policy: ResourcePolicy, instance, args, kwargs, _where=where):
                    return describe_file_argument(policy, _where, args, kwargs, api_type)

                def describe_new(policy: ResourcePolicy, instance, args, kwargs, _where=where):
                    return describe_file_argument(policy, _where, args[1:], kwargs, api_type)  # after cls

                # with a mode argument, describe sets the action
                action = None if where.mode is not None else where.action
                api = f"{prefix}.{function}"
                target = getattr(owner, function)
                if isinstance(target, type) and _wrap_constructor(point, target, api, action, describe, describe_new):
                    continue
                point.wrap(owner, function, point.audited(api, action, describe, after=after))

        return patch

    patchers: dict[str, list] = {}
    for key, functions in modules.items():
        patchers.setdefault(key.partition(":")[0], []).append(patcher(key, functions))

    def patch_all(patches: list) -> Callable[[AccessPoint, Any], None]:
        def patch(point: AccessPoint, module: Any) -> None:
            for one in patches:
                one(point, module)

        return patch

    return {module_name: patch_all(patches) for module_name, patches in patchers.items()}
