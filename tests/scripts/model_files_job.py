"""Each numpy and safetensors access point once, one call per line; the comment names the record expected
(api action type file).  tests/test_model_files.py runs it under opentelemetry-instrument."""
import sys
from pathlib import Path

import numpy as np
import torch

import safetensors.numpy
import safetensors.torch
from safetensors import safe_open

here = Path(sys.argv[1])
state = {"w": torch.arange(4, dtype=torch.float32)}
arrays = {"a": np.arange(3, dtype=np.float64)}
results = []
results.append(safetensors.torch.save_file(state, here / "w.safetensors"))  # safetensors.torch.save_file write model w.safetensors
results.append(float(safetensors.torch.load_file(str(here / "w.safetensors"))["w"].sum()))  # safetensors.torch.load_file read model w.safetensors
with safe_open(here / "w.safetensors", framework="pt") as f:  # safetensors.safe_open read model w.safetensors
    results.append(list(f.keys()))
module = torch.nn.Linear(2, 2)
results.append(safetensors.torch.save_model(module, str(here / "linear.safetensors")))  # safetensors.torch.save_model write model linear.safetensors
results.append(safetensors.torch.load_model(module, here / "linear.safetensors"))  # safetensors.torch.load_model read model linear.safetensors
results.append(safetensors.numpy.save_file(arrays, here / "n.safetensors"))  # safetensors.numpy.save_file write model n.safetensors
results.append(safetensors.numpy.load_file(here / "n.safetensors")["a"].tolist())  # safetensors.numpy.load_file read model n.safetensors
results.append(len(safetensors.torch.load(safetensors.torch.save(state))))  # bytes in memory: no record
results.append(np.save(here / "arr", np.arange(3)))  # numpy.save write data arr.npy
results.append(np.load(here / "arr.npy").tolist())  # numpy.load read data arr.npy
results.append(np.savez(str(here / "z"), a=np.arange(2)))  # numpy.savez write data z.npz
results.append(np.savez_compressed(here / "c.npz", a=np.arange(2)))  # numpy.savez_compressed write data c.npz
results.append(np.savetxt(here / "t.txt", np.arange(3)))  # numpy.savetxt write data t.txt
results.append(np.loadtxt(here / "t.txt").tolist())  # numpy.loadtxt read data t.txt
results.append(np.genfromtxt(str(here / "t.txt")).tolist())  # numpy.genfromtxt read data t.txt
np.arange(3, dtype=np.int64).tofile(here / "raw.bin")  # builtins.open write data raw.bin
results.append(np.fromfile(here / "raw.bin", dtype=np.int64).tolist())  # numpy.fromfile read data raw.bin
print(repr(results))
