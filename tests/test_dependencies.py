"""Import sweep with the optional packages blocked (Polygraphy's tests/mod/test_dependencies
idea): device software installs ``metaae-edge`` without torch, so every module of
``metaae_edge.runtime`` must import, and the CLI must answer ``--help``, with torch and the
other training / GPU packages absent. onnxruntime itself is imported lazily by the runtime,
so the module sweep blocks it too."""

from __future__ import annotations

import pkgutil

import pytest

TRAINING = ("torch", "onnx", "onnxscript", "safetensors", "sklearn", "scipy", "PIL",
            "matplotlib")
GPU = ("tensorrt", "cuda", "pycuda", "cupy")

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


def test_every_runtime_module_imports_without_optional_packages(python_without):
    mods = _runtime_modules()
    code = ("import importlib\n"
            f"for m in {mods!r}:\n"
            "    importlib.import_module(m)\n"
            "leaked = sorted(k for k in sys.modules if k.split('.')[0] in BLOCKED and loaded(k))\n"
            "print('LEAKED', leaked)\n")
    res = python_without(code, blocked=TRAINING + GPU + ("onnxruntime", "cryptography"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "LEAKED []" in res.stdout


def test_the_blocker_really_blocks(python_without):
    # If the prelude did not work, the sweep above would pass vacuously.
    res = python_without("import importlib.util\n"
                         "assert importlib.util.find_spec('torch') is None\n"
                         "import torch.nn\n", blocked=("torch",))
    assert res.returncode != 0
    assert "ModuleNotFoundError" in res.stderr or "ImportError" in res.stderr
    assert "AssertionError" not in res.stderr


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["inspect", "--help"],
                                  ["bench", "--help"], ["adapt-and-export", "--help"],
                                  ["meta-train", "--help"]])
def test_cli_help_without_torch(argv, python_without):
    code = ("from metaae_edge.cli import main\n"
            f"sys.argv = ['metaae-edge'] + {argv!r}\n"
            "try:\n"
            "    main()\n"
            "except SystemExit as e:\n"
            "    sys.exit(e.code)\n")
    res = python_without(code, blocked=TRAINING + GPU)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Usage" in res.stdout
    if argv == ["--help"]:
        for command in ("meta-train", "adapt-and-export", "run", "inspect", "tasks"):
            assert command in res.stdout
