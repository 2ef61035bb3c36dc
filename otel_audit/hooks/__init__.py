"""One module per access point; each knows only its library and exports ``ACCESS_POINT``.

| hook     | patched                                                   | api names                |
| -------- | --------------------------------------------------------- | ------------------------ |
| `open`   | `builtins.open`, `io.open` (so `pathlib.Path.open` & co.)  | `builtins.open`          |
| `pandas` | every `pandas.read_*` that takes a path or URL            | `pandas.read_csv`, ...   |
| `numpy`  | `load`, `save`, `savez`, `savez_compressed`, `loadtxt`, `savetxt`, `genfromtxt`, `fromfile` | `numpy.load`, ... |
| `torch`  | `torch.load`, `torch.save`                                | `torch.load`, `torch.save` |
| `safetensors` | `safe_open`; `load_file`/`save_file` of every framework module; `safetensors.torch.load_model`/`save_model` | `safetensors.torch.load_file`, `safetensors.safe_open`, ... |
| `joblib` | `joblib.load`, `joblib.dump`                              | `joblib.load`, `joblib.dump` |
| `boto3`  | S3 object operations of botocore clients (and resources), `download_file`/`download_fileobj`/`upload_file`/`upload_fileobj` | `s3.GetObject`, `s3.download_file`, ... |
"""

from __future__ import annotations

import importlib

from otel_audit.hooks._base import AccessPoint


def load_access_point(name: str) -> AccessPoint:
    """The access point for hook ``name`` (``open``, ``pandas``, ...); imports only our module, not the library."""
    return importlib.import_module(f"otel_audit.hooks.{name}_hook").ACCESS_POINT
