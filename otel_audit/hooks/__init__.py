"""One module per access point (``<hook>_hook.py``); each knows only its library and exports ``ACCESS_POINT``.

The hook names are ``config.HOOK_NAMES`` (``OTEL_PYTHON_AUDIT_HOOKS``); what each patches, and the
``audit.api`` it records, is in each module's docstring and in the README's "What is audited" table.

A hook's module is itself imported only when the program imports one of the modules it patches
(:data:`MODULES`, as OpenTelemetry contrib keeps a light ``package.py`` beside each instrumentation):
a program that never imports pandas never loads ``pandas_hook`` either, and starts that much faster.
"""

from __future__ import annotations

import importlib
import sys
import threading

import wrapt

from otel_audit import diagnostics
from otel_audit.hooks._base import AccessPoint, hook_failed
from otel_audit.recorder import AuditRecorder

# hook -> the modules its access point patches (a test keeps this table and each ACCESS_POINT together).
# The first of them imported loads the hook module, which patches it at once, as it finishes importing
# (before the package that imports it re-exports its functions: ``datasets`` binds ``load_dataset`` from
# ``datasets.load``), and each of the others when it is imported.
MODULES: dict[str, tuple[str, ...]] = {
    "open": ("builtins", "io"),
    "os": ("os", "shutil", "glob", "pathlib", "io"),
    "threads": ("concurrent.futures.thread",),
    "pandas": ("pandas",),
    "pyarrow": ("pyarrow", "pyarrow.parquet", "pyarrow.csv", "pyarrow.json", "pyarrow.feather", "pyarrow.orc",
                "pyarrow.ipc", "pyarrow.dataset", "pyarrow.fs"),
    "polars": ("polars",),
    "numpy": ("numpy",),
    "h5py": ("h5py",),
    "pillow": ("PIL.Image",),
    "sqlite3": ("sqlite3",),
    "torch": ("torch",),
    "safetensors": ("safetensors", "safetensors.torch", "safetensors.numpy", "safetensors.flax",
                    "safetensors.tensorflow", "safetensors.paddle", "safetensors.mlx"),
    "huggingface": ("transformers.modeling_utils", "transformers.models.auto.modeling_auto",
                    "transformers.configuration_utils", "transformers.models.auto.configuration_auto",
                    "transformers.tokenization_utils_base", "transformers.models.auto.tokenization_auto",
                    "transformers.processing_utils", "transformers.models.auto.processing_auto",
                    "transformers.image_processing_base", "transformers.models.auto.image_processing_auto",
                    "transformers.feature_extraction_utils", "transformers.models.auto.feature_extraction_auto",
                    "transformers.generation.configuration_utils", "huggingface_hub.file_download",
                    "huggingface_hub._snapshot_download"),
    "datasets": ("datasets.load", "datasets.arrow_dataset", "datasets.dataset_dict"),
    "fsspec": ("fsspec.spec",),
    "joblib": ("joblib",),
    "boto3": ("botocore.client", "boto3.s3.inject"),
}


def load_access_point(name: str) -> AccessPoint:
    """The access point for hook ``name`` (``open``, ``pandas``, ...); imports only our module, not the library."""
    return importlib.import_module(f"otel_audit.hooks.{name}_hook").ACCESS_POINT


class DeferredAccessPoint:
    """Hook ``name``'s access point, its module imported when the first of its :data:`MODULES` is.

    Installed and uninstalled as the :class:`AccessPoint` it stands for.  One per hook and process
    (:func:`deferred_access_point`): post-import hooks cannot be unregistered, so the ones registered
    at the first ``install`` serve every later one.
    """

    def __init__(self, name: str):
        self.name = name
        self.point: AccessPoint | None = None  # once loaded
        self._recorder: AuditRecorder | None = None
        self._registered = False
        self._loading = False
        self._lock = threading.RLock()

    @property
    def recorder(self) -> AuditRecorder | None:
        return self._recorder

    def install(self, recorder: AuditRecorder) -> None:
        with self._lock:
            self._recorder = recorder
            if self.point is not None:
                self.point.install(recorder)
                return
            register, self._registered = not self._registered, True
        if register:
            for module in MODULES[self.name]:
                wrapt.register_post_import_hook(self._load, module)  # at once when it is imported already
        elif any(module in sys.modules for module in MODULES[self.name]):
            self._load(None)

    def uninstall(self) -> None:
        with self._lock:
            self._recorder = None
            if self.point is not None:
                self.point.uninstall()

    def _load(self, module: object) -> None:
        # Runs inside the program's import statement: nothing may escape.  _loading: the hook module's
        # own imports can import another of its modules, which calls this again.
        with self._lock:
            if self._recorder is None or self.point is not None or self._loading:
                return
            self._loading = True
            try:
                point = load_access_point(self.name)
                point.install(self._recorder)
                self.point = point
            except Exception as exc:
                diagnostics.report(f"hook {self.name!r} not installed: {type(exc).__name__}: {exc}; its accesses "
                                   "are NOT audited", key=f"hook:{self.name}")
                hook_failed(self._recorder, self.name, exc)
            finally:
                self._loading = False


_deferred: dict[str, DeferredAccessPoint] = {}
_deferred_lock = threading.Lock()


def deferred_access_point(name: str) -> DeferredAccessPoint:
    """The one :class:`DeferredAccessPoint` of hook ``name`` (``KeyError`` for a name not in :data:`MODULES`)."""
    with _deferred_lock:
        point = _deferred.get(name)
        if point is None:
            MODULES[name]  # noqa: B018 -- an unknown hook fails here, at install, not at an import
            point = _deferred[name] = DeferredAccessPoint(name)
        return point
