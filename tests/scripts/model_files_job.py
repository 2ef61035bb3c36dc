"""numpy and safetensors access points: each call once; the comment names its records (tests/jobs.py)."""
import pathlib
import sys

import numpy as np
import safetensors.numpy
import safetensors.torch
import torch
from safetensors import safe_open

from calls import run

d = pathlib.Path(sys.argv[1])
state = {"w": torch.arange(4, dtype=torch.float32)}
arrays = {"a": np.arange(3, dtype=np.float64)}


def setup():
    safetensors.torch.save_file(state, d / "w.safetensors")
    safetensors.torch.save_model(torch.nn.Linear(2, 2), str(d / "linear.safetensors"))
    safetensors.numpy.save_file(arrays, d / "n.safetensors")
    np.save(d / "arr.npy", np.arange(3))
    np.savetxt(d / "t.txt", np.arange(3))
    np.arange(3, dtype=np.int64).tofile(d / "raw.bin")


def keys_through_safe_open():
    with safe_open(d / "w.safetensors", framework="pt") as f:  # safetensors.safe_open read model w.safetensors
        return list(f.keys())


CALLS = [
    lambda: safetensors.torch.save_file(state, d / "w2.safetensors"),  # safetensors.torch.save_file write model w2.safetensors
    lambda: float(safetensors.torch.load_file(str(d / "w.safetensors"))["w"].sum()),  # safetensors.torch.load_file read model w.safetensors
    keys_through_safe_open,
    lambda: safetensors.torch.save_model(torch.nn.Linear(2, 2), str(d / "linear2.safetensors")),  # safetensors.torch.save_model write model linear2.safetensors
    lambda: safetensors.torch.load_model(torch.nn.Linear(2, 2), d / "linear.safetensors"),  # safetensors.torch.load_model read model linear.safetensors
    lambda: safetensors.numpy.save_file(arrays, d / "n2.safetensors"),  # safetensors.numpy.save_file write model n2.safetensors
    lambda: safetensors.numpy.load_file(d / "n.safetensors")["a"].tolist(),  # safetensors.numpy.load_file read model n.safetensors
    lambda: len(safetensors.torch.load(safetensors.torch.save(state))),  # bytes in memory: no record
    lambda: np.save(d / "arr2", np.arange(3)),  # numpy.save write data arr2.npy
    lambda: np.load(d / "arr.npy").tolist(),  # numpy.load read data arr.npy
    lambda: np.savez(str(d / "z"), a=np.arange(2)),  # numpy.savez write data z.npz
    lambda: np.savez_compressed(d / "c.npz", a=np.arange(2)),  # numpy.savez_compressed write data c.npz
    lambda: np.savetxt(d / "t2.txt", np.arange(3)),  # numpy.savetxt write data t2.txt
    lambda: np.loadtxt(d / "t.txt").tolist(),  # numpy.loadtxt read data t.txt
    lambda: np.genfromtxt(str(d / "t.txt")).tolist(),  # numpy.genfromtxt read data t.txt
    lambda: np.arange(3, dtype=np.int64).tofile(d / "raw2.bin"),  # numpy.ndarray.tofile write data raw2.bin
    lambda: np.fromfile(d / "raw.bin", dtype=np.int64).tolist(),  # numpy.fromfile read data raw.bin
    lambda: np.memmap(d / "raw.bin", dtype=np.int64, mode="r").tolist(),  # numpy.memmap read data raw.bin
    lambda: isinstance(np.memmap(str(d / "mm.bin"), dtype=np.int64, mode="w+", shape=(2,)), np.memmap),  # numpy.memmap write data mm.bin
]

run(CALLS, setup)
