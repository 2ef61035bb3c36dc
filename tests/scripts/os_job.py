"""os-level access points: each call once; the comment names the records it must give (tests/jobs.py)."""
import glob
import io
import os
import pathlib
import shutil
import sys
import tempfile

from calls import run

d = pathlib.Path(sys.argv[1])


def setup():
    (d / "tree" / "deep").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt", "gone.txt", "tree/deep/x.txt", "p.txt", "q.txt", "r.txt"):
        (d / name).write_text(name)
    (d / "emptydir").mkdir()
    (d / "pdir").mkdir()
    (d / "into").mkdir()


def write_with_fd():
    fd = os.open(d / "fd.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)  # os.open write data fd.bin
    os.write(fd, b"abc")
    os.close(fd)


def library_scratch_work():
    # what the standard library does on its own is not the user's call: no record for the directory
    # tempfile makes and removes, nor for the file it opens with os.open and unlinks
    with tempfile.TemporaryDirectory(dir=d):
        pass
    with tempfile.NamedTemporaryFile(dir=d):
        pass


CALLS = [
    lambda: sorted(os.listdir(d)),  # os.listdir list data .
    lambda: sorted(entry.name for entry in os.scandir(d / "tree")),  # os.scandir list data tree
    lambda: [sorted(files) for _, _, files in os.walk(d / "tree")],  # os.walk list data tree
    lambda: os.rename(d / "a.txt", d / "a2.txt"),  # os.rename delete data a.txt + os.rename write data a2.txt
    lambda: os.replace(d / "b.txt", d / "b2.txt"),  # os.replace delete data b.txt + os.replace write data b2.txt
    lambda: os.remove(d / "gone.txt"),  # os.remove delete data gone.txt
    lambda: os.rmdir(d / "emptydir"),  # os.rmdir delete data emptydir
    write_with_fd,
    lambda: io.FileIO(d / "raw.bin", "w").write(b"raw"),  # io.FileIO write data raw.bin
    lambda: io.FileIO(str(d / "c.txt")).readall(),  # io.FileIO read data c.txt
    lambda: pathlib.Path(shutil.copyfile(d / "c.txt", d / "c-copy.txt")).name,  # shutil.copyfile read data c.txt + shutil.copyfile write data c-copy.txt
    lambda: pathlib.Path(shutil.copy2(d / "c.txt", d / "into")).name,  # shutil.copy2 read data c.txt + shutil.copy2 write data into/c.txt
    lambda: pathlib.Path(shutil.copytree(d / "tree", d / "tree2")).name,  # shutil.copytree read data tree + shutil.copytree write data tree2
    lambda: pathlib.Path(shutil.move(d / "p.txt", d / "into")).name,  # shutil.move delete data p.txt + shutil.move write data into/p.txt
    lambda: shutil.rmtree(d / "tree2"),  # shutil.rmtree delete data tree2
    lambda: (d / "q.txt").unlink(),  # pathlib.Path.unlink delete data q.txt
    lambda: (d / "pdir").rmdir(),  # pathlib.Path.rmdir delete data pdir
    lambda: (d / "r.txt").rename(d / "r2.txt").name,  # pathlib.Path.rename delete data r.txt + pathlib.Path.rename write data r2.txt
    lambda: sorted(p.name for p in (d / "tree").iterdir()),  # pathlib.Path.iterdir list data tree
    lambda: sorted(p.name for p in d.glob("*.txt")),  # pathlib.Path.glob list data *.txt
    lambda: sorted(p.name for p in (d / "tree").rglob("*.txt")),  # pathlib.Path.rglob list data tree/**/*.txt
    lambda: sorted(os.path.basename(p) for p in glob.glob(str(d / "*.txt"))),  # glob.glob list data *.txt
    lambda: sorted(os.path.basename(p) for p in glob.iglob(str(d / "tree" / "*"))),  # glob.iglob list data tree/*
]

if sys.argv[2:] != ["closed"]:
    CALLS.append(library_scratch_work)
run(CALLS, setup)
