"""Import sweep with the optional packages blocked (Polygraphy's tests/mod/test_dependencies
idea): device software installs ``metaae-edge`` without torch, so every module of
``metaae_edge.runtime`` must import, and the CLI must answer ``--help``, with torch and the
other training / GPU packages absent. onnxruntime itself is imported lazily by the runtime,
so the module sweep blocks it too."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import metaae_edge

TRAINING = ("torch", "onnx", "onnxscript", "safetensors", "sklearn", "scipy", "PIL",
            "matplotlib")
GPU = ("tensorrt", "cuda", "pycuda", "cupy")

# A meta-path finder that refuses the blocked top-level packages, whatever imports them.
_PRELUDE = """
import importlib.abc, sys
BLOCKED = set({blocked!r})
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked for the test: {{name}}")
        return None
sys.meta_path.insert(0, _Block())
"""


def _run(code: str, blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    src = _PRELUDE.format(blocked=blocked) + code
    return subprocess.run([sys.executable, "-c", src], capture_output=True, text=True,
                          timeout=120, cwd=Path(metaae_edge.__file__).parents[1])


def _runtime_modules() -> list[str]:
    import metaae_edge.runtime as rt

    names = [rt.__name__]
    for info in pkgutil.walk_packages(rt.__path__, prefix=rt.__name__ + "."):
        names.append(info.name)
    return sorted(names)


def test_runtime_sweep_finds_the_backend_modules():
    # The sweep below is only worth something if it really walks the package.
    mods = _runtime_modules()
    assert "metaae_edge.runtime.api" in mods
    assert "metaae_edge.runtime.bundle" in mods
    assert len(mods) >= 6


def test_every_runtime_module_imports_without_optional_packages():
    mods = _runtime_modules()
    code = ("import importlib\n"
            f"for m in {mods!r}:\n"
            "    importlib.import_module(m)\n"
            "leaked = sorted(k for k in sys.modules if k.split('.')[0] in BLOCKED)\n"
            "print('LEAKED', leaked)\n")
    res = _run(code, TRAINING + GPU + ("onnxruntime",))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "LEAKED []" in res.stdout


def test_the_blocker_really_blocks():
    # If the prelude did not work, the sweep above would pass vacuously.
    res = _run("import torch\n", ("torch",))
    assert res.returncode != 0
    assert "blocked for the test: torch" in res.stderr


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["inspect", "--help"],
                                  ["bench", "--help"], ["adapt-and-export", "--help"],
                                  ["meta-train", "--help"]])
def test_cli_help_without_torch(argv):
    code = ("from metaae_edge.cli import main\n"
            f"sys.argv = ['metaae-edge'] + {argv!r}\n"
            "try:\n"
            "    main()\n"
            "except SystemExit as e:\n"
            "    sys.exit(e.code)\n")
    res = _run(code, TRAINING + GPU)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Usage" in res.stdout
