"""The one build step pyproject.toml cannot say: install ``otel_audit.pth`` at the top of site-packages.

Its line runs at every interpreter start and does nothing unless ``PYTHONPATH`` names
OpenTelemetry's auto-instrumentation directory; then it hooks otel-audit in, so that a failing
OpenTelemetry configuration does not switch auditing off (see ``otel_audit/_startup.py``).
Everything else about the project is in pyproject.toml.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = "otel_audit.pth"
PTH_LINE = ("import os; 'auto_instrumentation' in os.environ.get('PYTHONPATH', '') "
            "and __import__('otel_audit._startup')._startup.install()\n")


def write_pth(directory) -> str:
    path = os.path.join(directory, PTH_NAME)
    with open(path, "w", encoding="utf-8") as file:
        file.write(PTH_LINE)
    return path


class BuildPy(build_py):
    """A wheel: the .pth beside the package."""

    def run(self):
        super().run()
        if not self.editable_mode:
            write_pth(self.build_lib)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if not self.editable_mode:
            outputs.append(os.path.join(self.build_lib, PTH_NAME))
        return outputs


class EditableWheel(editable_wheel):
    """An editable install (``pip install -e``): the same .pth, written into the wheel being made.
    setuptools has no public step for a file outside the packages; this one is checked by the test suite
    (it runs from an editable install and needs the hook) and by tests/test_install.py (a real wheel)."""

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        write_pth(unpacked_wheel)
        return result


setup(cmdclass={"build_py": BuildPy, "editable_wheel": EditableWheel})
