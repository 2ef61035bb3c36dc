"""What every access point shares: patching on import, exact restore, the audited-call wrapper.

An :class:`AccessPoint` names the modules it patches and, for each, a function
that patches it.  ``install`` registers wrapt post-import hooks, so a library
is patched when the user's code imports it, never imported by us.
``uninstall`` puts back the exact objects it replaced (post-import hooks
cannot be unregistered, so they stay but do nothing while uninstalled).

:meth:`AccessPoint.audited` builds the one wrapper all hooks use: it asks the
hook's ``describe`` what resource the call touches, runs the call untouched,
and emits one record with the outcome.  While it runs, the accesses the
library makes internally are not recorded (the outermost call is the one the
user made).
"""

from __future__ import annotations

import importlib
import os
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
from otel_audit.resources import ResourcePolicy, fspath_or_none

# describe(policy, instance, args, kwargs) -> attributes of the resource and action, or None (not audited)
Describe = Callable[[ResourcePolicy, Any, tuple, dict], "dict | None"]
# after(attributes, result): attributes known only once the call returned (file.size, request id)
After = Callable[[dict, Any], None]

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


class AuditedFunction(wrapt.FunctionWrapper):
    """A patched function that pickles by reference, as the original did.

    It unpickles as ``getattr(<module or class>, <name>)``: whatever stands
    there in the receiving process, with no reference to otel-audit in the
    pickle (a process without otel-audit can load it).
    """

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


def _size_of_file_read(attributes: dict, result: Any) -> None:
    """The default ``after``: ``file.size`` of a local file that was read."""
    path = attributes.get(schema.FILE_PATH)
    if path is not None and attributes.get(schema.AUDIT_ACTION) == schema.ACTION_READ:
        try:
            attributes[schema.FILE_SIZE] = os.stat(path).st_size
        except OSError:  # gone already, or a name we could not export verbatim
            pass


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

    def wrap(self, owner: Any, attribute: str, wrapper: Callable) -> None:
        """Replace ``owner.attribute`` by a wrapt wrapper, remembering the exact original.

        A module-level function is also replaced where its ``__module__`` says
        it lives (``torch.load`` in ``torch.serialization``), by the same
        wrapper object: pickle and cloudpickle look a function up by its
        ``__module__``/``__qualname__`` and accept it only if they find that
        very object, so ``pool.map(pd.read_csv, files)`` keeps working.
        """
        if any(o is owner and a == attribute for o, a, _ in self._originals):
            return
        places = [(owner, attribute, vars(owner).get(attribute, _MISSING))]
        wrapper = _filed_under_library(wrapper, owner)
        function = wrapt.wrap_object(owner, attribute, AuditedFunction, (wrapper, owner, attribute))
        if isinstance(owner, ModuleType):
            original = function.__wrapped__
            home = sys.modules.get(getattr(original, "__module__", None) or "")
            name = getattr(original, "__qualname__", "")
            if home is not None and home is not owner and "." not in name and vars(home).get(name) is original:
                places.append((home, name, original))
                setattr(home, name, function)
        self._originals.extend(places)

    # -- the audited call --------------------------------------------------
    def audited(
        self,
        api: str | None,
        action: str | None,
        describe: Describe,
        *,
        after: After | None = None,
        classify_error: ErrorClassifier = classify_exception,
    ) -> Callable:
        """A wrapt wrapper recording each outermost call of ``api`` as one access.

        ``api`` and ``action`` are fixed for the wrapped function, or ``None``
        when ``describe`` sets them (``open``'s mode decides read or write; one
        botocore method serves every S3 operation).
        """
        point = self
        where = api or self.name

        def wrapper(wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
            recorder = point._recorder
            if recorder is None or in_audited_call.get():
                return wrapped(*args, **kwargs)
            try:
                attributes = describe(recorder.policy, instance, args, kwargs)
                if attributes is not None:
                    if api is not None:
                        attributes[schema.AUDIT_API] = api
                    if action is not None:
                        attributes[schema.AUDIT_ACTION] = action
                    # No Python caller at all: the interpreter itself (printing a
                    # traceback's source lines) opens the file, not the program.
                    caller = sys._getframe().f_back
                    call_site = find_call_site(caller) if caller is not None else None
                    if call_site is None:
                        attributes = None
                    else:
                        attributes[schema.CODE_FILE_PATH] = call_site[0]
                        attributes[schema.CODE_LINE_NUMBER] = call_site[1]
                        attributes[schema.CODE_FUNCTION_NAME] = call_site[2]
            except Exception as exc:
                diagnostics.report_internal_error(where, exc)
                attributes = None
            if attributes is None:
                return wrapped(*args, **kwargs)
            recorder.admit()  # fail-closed: PermissionError before the access happens

            start_ns = time.time_ns()
            token = in_audited_call.set(True)
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                in_audited_call.reset(token)
                recorder.emit_error(attributes, start_ns=start_ns, error=exc, classify_error=classify_error)
                raise
            in_audited_call.reset(token)
            try:
                (after or _size_of_file_read)(attributes, result)
            except Exception as exc:
                diagnostics.report_internal_error(where, exc)
            recorder.emit(attributes, start_ns=start_ns)
            return result

        return wrapper


class FileArgument(NamedTuple):
    """Where a function's file argument is, and what the call does to it."""

    action: str
    position: int
    name: str
    suffix: str = ""  # appended to a path that does not end with it, as the function does (numpy.save: .npy)


def file_functions_access_point(name: str, modules: dict[str, dict[str, tuple]], api_type: str) -> AccessPoint:
    """The access point of a library whose functions take a file: ``{module: {function: FileArgument}}``.

    Each function is recorded as ``<module>.<function>`` with the path or URL it was given (a buffer or
    bytes are not a named resource: not recorded).  A function a version of the library lacks is skipped.
    """

    def patcher(module_name: str, functions: dict[str, tuple]) -> Callable[[AccessPoint, Any], None]:
        def patch(point: AccessPoint, module: Any) -> None:
            for function, spec in functions.items():
                if not hasattr(module, function):
                    continue
                where = FileArgument(*spec)

                def describe(policy: ResourcePolicy, instance, args, kwargs, _where=where):
                    target = argument(args, kwargs, _where.position, _where.name)
                    if _where.suffix:
                        path = fspath_or_none(target)
                        if path is not None and "://" not in path and not path.endswith(_where.suffix):
                            target = path + _where.suffix
                    return policy.describe(target, api_type)

                point.wrap(module, function, point.audited(f"{module_name}.{function}", where.action, describe))

        return patch

    return AccessPoint(name, {module_name: patcher(module_name, functions) for module_name, functions in modules.items()})
