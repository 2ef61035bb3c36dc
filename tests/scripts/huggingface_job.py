"""Hugging Face access points: each call once; the comment names its records (tests/jobs.py).

A tiny BERT made here is saved to a directory and placed in a hub cache laid out as huggingface_hub
lays it out (blobs, a snapshot of symlinks, refs/main), so that hub ids resolve offline.
"""
import hashlib
import os
import pathlib
import sys

d = pathlib.Path(sys.argv[1])
os.environ.update(HF_HUB_OFFLINE="1", HF_HOME=str(d / "hf-home"), HF_HUB_CACHE=str(d / "hub"),
                  TRANSFORMERS_VERBOSITY="error", HF_HUB_DISABLE_PROGRESS_BARS="1")

import torch  # noqa: E402
from huggingface_hub import hf_hub_download, snapshot_download  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import (AutoConfig, AutoFeatureExtractor, AutoImageProcessor, AutoModel,  # noqa: E402
                          AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerFast, ViTImageProcessor,
                          Wav2Vec2FeatureExtractor)

from calls import run  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def setup():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=8, max_position_embeddings=16)
    BertModel(config).save_pretrained(d / "model")
    words = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1, "hello": 2, "world": 3}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(d / "model")
    ViTImageProcessor(size={"height": 8, "width": 8}).save_pretrained(d / "processor")
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000).save_pretrained(d / "extractor")
    repo = d / "hub" / "models--org--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    for name in ("config.json", "model.safetensors"):
        data = (d / "model" / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


def weights_sum(model) -> float:
    return round(float(sum(p.detach().sum() for p in model.parameters())), 4)


CALLS = [
    lambda: weights_sum(AutoModel.from_pretrained(d / "model")),  # transformers.AutoModel.from_pretrained read model model
    lambda: weights_sum(BertModel.from_pretrained(str(d / "model"))),  # transformers.BertModel.from_pretrained read model model
    lambda: AutoConfig.from_pretrained(d / "model").hidden_size,  # transformers.AutoConfig.from_pretrained read data model
    lambda: AutoTokenizer.from_pretrained(d / "model")("hello world")["input_ids"],  # transformers.AutoTokenizer.from_pretrained read data model
    lambda: weights_sum(AutoModel.from_pretrained("org/tiny")),  # transformers.AutoModel.from_pretrained read model hf://org/tiny
    lambda: pathlib.Path(hf_hub_download("org/tiny", "config.json")).name,  # huggingface_hub.hf_hub_download read data hf://org/tiny/config.json
    lambda: pathlib.Path(snapshot_download("org/tiny", revision="main")).name,  # huggingface_hub.snapshot_download read model hf://org/tiny
    lambda: BertModel(BertConfig(vocab_size=8, hidden_size=4, num_hidden_layers=1, num_attention_heads=1,
                                 intermediate_size=4)).save_pretrained(d / "saved"),  # transformers.BertModel.save_pretrained write model saved
    lambda: BertConfig(hidden_size=4).save_pretrained(d / "saved-config"),  # transformers.BertConfig.save_pretrained write data saved-config
    lambda: type(AutoImageProcessor.from_pretrained(d / "processor", backend="pil")).__name__,  # transformers.AutoImageProcessor.from_pretrained read data processor
    lambda: AutoFeatureExtractor.from_pretrained(str(d / "extractor")).sampling_rate,  # transformers.AutoFeatureExtractor.from_pretrained read data extractor
    # ViTImageProcessor() makes a ViTImageProcessorPil (transformers 5): the record names the class of the object
    lambda: ViTImageProcessor().save_pretrained(d / "saved-processor") is not None,  # transformers.ViTImageProcessorPil.save_pretrained write data saved-processor
]

run(CALLS, setup)
