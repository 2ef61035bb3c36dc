"""Hugging Face: ``from_pretrained``/``save_pretrained`` of transformers, and hub downloads to the local cache.

* ``from_pretrained`` of models, configs, tokenizers, processors, image processors,
  feature extractors, generation configs and every ``Auto*`` class is **one** record per
  call, named ``transformers.<the class called>.from_pretrained`` (``AutoModel``, not the
  ``BertModel`` it dispatches to), for what the user named: the local directory (or file),
  or the hub id as ``hf://<id>`` (``hf://datasets/<id>`` for datasets) with
  ``audit.resource.revision`` (``main`` when none was given) and, once the snapshot used is
  known, its commit in ``audit.resource.version``.  The files the call opened (config,
  weight shards, tokenizer files) are listed in ``audit.resource.files``, not recorded one
  by one.  Models (and ``AutoModel*``) are type ``model``; configs, tokenizers and
  processors type ``data``.
* ``save_pretrained`` is one write of the directory, with the files written listed.
* ``huggingface_hub.hf_hub_download`` (``hf://<id>/<filename>``) and ``snapshot_download``
  (``hf://<id>``) are one read each, with the revision, the commit and the local file or
  snapshot they resolved to.  Offline (``HF_HUB_OFFLINE=1``) they resolve from the cache.

Files a tokenizer writes in Rust (``tokenizer.json``) are not seen by any hook and are not
listed.  Loading that transformers spreads over worker threads lists only what the calling
thread opened; the other threads' opens are recorded as their own accesses.
"""

from __future__ import annotations

import os
import re
from typing import Any

from otel_audit import schema
from otel_audit.hooks._base import AccessPoint, argument, nothing_after
from otel_audit.resources import ResourcePolicy, fspath_or_none, printable

_SNAPSHOT = re.compile(r"[/\\]snapshots[/\\]([0-9a-f]{40})(?:[/\\]|$)")
_REPO_PREFIX = {None: "", "model": "", "dataset": "datasets/", "space": "spaces/"}

EVERY_CLASS = "*"  # every class of the module with a from_pretrained of its own (transformers gives each
# AutoModel* class its own copy of _BaseAutoModelClass.from_pretrained)

# module -> {class: resource type of what its from_pretrained loads}
PRETRAINED: dict[str, dict[str, str]] = {
    "transformers.modeling_utils": {"PreTrainedModel": schema.TYPE_MODEL},
    "transformers.models.auto.modeling_auto": {EVERY_CLASS: schema.TYPE_MODEL},
    "transformers.configuration_utils": {"PretrainedConfig": schema.TYPE_DATA},
    "transformers.models.auto.configuration_auto": {"AutoConfig": schema.TYPE_DATA},
    "transformers.tokenization_utils_base": {"PreTrainedTokenizerBase": schema.TYPE_DATA},
    "transformers.models.auto.tokenization_auto": {"AutoTokenizer": schema.TYPE_DATA},
    "transformers.processing_utils": {"ProcessorMixin": schema.TYPE_DATA},
    "transformers.models.auto.processing_auto": {"AutoProcessor": schema.TYPE_DATA},
    "transformers.image_processing_base": {"ImageProcessingMixin": schema.TYPE_DATA},
    "transformers.models.auto.image_processing_auto": {"AutoImageProcessor": schema.TYPE_DATA},
    "transformers.feature_extraction_utils": {"FeatureExtractionMixin": schema.TYPE_DATA},
    "transformers.models.auto.feature_extraction_auto": {"AutoFeatureExtractor": schema.TYPE_DATA},
    "transformers.generation.configuration_utils": {"GenerationConfig": schema.TYPE_DATA},
}

# huggingface_hub function -> (module, whether it names one file)
DOWNLOADS: dict[str, tuple[str, bool]] = {
    "hf_hub_download": ("huggingface_hub.file_download", True),
    "snapshot_download": ("huggingface_hub._snapshot_download", False),
}


def hub_attributes(policy: ResourcePolicy, repo_id: Any, repo_type: Any, revision: Any, filename: Any, api_type: str) -> dict | None:
    if not isinstance(repo_id, str) or not repo_id:
        return None
    name = f"hf://{_REPO_PREFIX.get(repo_type, f'{repo_type}s/')}{repo_id}"
    if isinstance(filename, str):
        name += f"/{filename}"
    attributes = policy.describe_url(name, api_type)
    if attributes is not None:
        attributes[schema.AUDIT_RESOURCE_REVISION] = printable(revision if isinstance(revision, str) else "main")
    return attributes


def _class_name(instance: Any) -> str:
    return (instance if isinstance(instance, type) else type(instance)).__name__


def _pretrained_describer(api_type: str, method: str):
    def describe(policy: ResourcePolicy, instance, args: tuple, kwargs: dict) -> dict | None:
        if method == "save_pretrained":
            target = argument(args, kwargs, 0, "save_directory")
            attributes = policy.describe(target, api_type)
            action = schema.ACTION_WRITE
        else:
            target = argument(args, kwargs, 0, "pretrained_model_name_or_path")
            path = fspath_or_none(target)
            if path is None:
                return None
            if os.path.exists(path) or "://" in path:
                attributes = policy.describe(path, api_type)
            else:  # a hub id: the cache, or a download
                attributes = hub_attributes(policy, path, kwargs.get("repo_type"), kwargs.get("revision"), None, api_type)
            action = schema.ACTION_READ
        if attributes is not None:
            attributes[schema.AUDIT_API] = f"transformers.{_class_name(instance)}.{method}"
            attributes[schema.AUDIT_ACTION] = action
        return attributes

    return describe


def _resolved_snapshot(attributes: dict, paths: Any) -> None:
    """The commit of the hub snapshot the call read, and the files relative to that snapshot."""
    if schema.AUDIT_RESOURCE_REVISION not in attributes or not paths:
        return
    for path in paths:
        match = _SNAPSHOT.search(path)
        if match:
            attributes[schema.AUDIT_RESOURCE_VERSION] = match.group(1)
            root = path[:match.end(1)] + os.sep
            attributes[schema.AUDIT_RESOURCE_FILES] = tuple(p[len(root):] if p.startswith(root) else p for p in paths)
            return


def _after_pretrained(attributes: dict, result: Any) -> None:
    _resolved_snapshot(attributes, attributes.get(schema.AUDIT_RESOURCE_FILES))


def _download_describer(one_file: bool):
    def describe(policy: ResourcePolicy, instance, args: tuple, kwargs: dict) -> dict | None:
        filename = argument(args, kwargs, 1, "filename") if one_file else None
        subfolder = kwargs.get("subfolder") if one_file else None
        if isinstance(filename, str) and isinstance(subfolder, str) and subfolder:
            filename = f"{subfolder}/{filename}"
        repo_type = argument(args, kwargs, 3, "repo_type") if one_file else argument(args, kwargs, 1, "repo_type")
        revision = argument(args, kwargs, 4, "revision") if one_file else argument(args, kwargs, 2, "revision")
        api_type = schema.TYPE_MODEL if not one_file and repo_type in (None, "model") else schema.TYPE_DATA
        return hub_attributes(policy, argument(args, kwargs, 0, "repo_id"), repo_type, revision, filename, api_type)

    return describe


def _after_download(attributes: dict, result: Any) -> None:
    if isinstance(result, (str, os.PathLike)):
        _resolved_snapshot(attributes, [os.fspath(result)])


def _pretrained_patcher(classes: dict[str, str]):
    def patch(point: AccessPoint, module) -> None:
        for class_name, api_type in classes.items():
            if class_name == EVERY_CLASS:
                found = [cls for cls in vars(module).values()
                         if isinstance(cls, type) and cls.__module__ == module.__name__ and "from_pretrained" in vars(cls)]
            else:
                found = [cls for cls in (getattr(module, class_name, None),) if cls is not None]
            for cls, method in ((cls, method) for cls in found for method in ("from_pretrained", "save_pretrained")):
                if method in vars(cls):
                    after = _after_pretrained if method == "from_pretrained" else None
                    point.wrap(cls, method, point.audited(None, None, _pretrained_describer(api_type, method),
                                                          after=after or nothing_after, list_files=True))

    return patch



def _download_patcher(function: str, one_file: bool):
    def patch(point: AccessPoint, module) -> None:
        point.wrap(module, function, point.audited(f"huggingface_hub.{function}", schema.ACTION_READ,
                                                   _download_describer(one_file), after=_after_download))

    return patch


ACCESS_POINT = AccessPoint("huggingface", {
    **{module: _pretrained_patcher(classes) for module, classes in PRETRAINED.items()},
    **{module: _download_patcher(function, one_file) for function, (module, one_file) in DOWNLOADS.items()},
})
