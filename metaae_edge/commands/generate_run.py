"""``metaae-edge run BUNDLE --mode generate --n N [--seed S] --output OUT`` (torch-free).

Vector bundles write ``OUT`` as .npy / .csv (N, D); image bundles a .npy stack (N, H, W)
(or (N, H, W, C)) or a folder of PNG files ``000000.png`` ... (written as a whole). Every
check (the count, the output, the bundle's density and decoder) runs before any sample is
drawn; the bundle itself is never written into.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..fsutil import atomic_dir
from ..runtime import Runtime
from ..runtime.generate import check_n, load_density
from ..runtime.images import write_images
from ..runtime.io import check_array_path, check_finite_output, check_output_dir, write_array
from .run_paths import _inside, check_output

__all__ = ["run_generate"]


def _plan(rt: Runtime, output: Path) -> bool:
    """Whether ``output`` is a PNG folder (image bundles without a suffix)."""
    suffix = output.suffix.lower()
    if rt.contract.is_image:
        if suffix not in ("", ".npy"):
            raise InputError(f"--output {output}: for an image bundle pass a folder (PNG "
                             "files) or a .npy file")
    else:
        check_array_path(output)
    check_output_dir(output)
    if _inside(output, rt.bundle.root):
        raise InputError(f"--output {output} is inside the bundle {rt.bundle.root}; write "
                         "the samples elsewhere")
    return rt.contract.is_image and suffix == ""


def run_generate(rt: Runtime, output: Path, n: int | None, seed: int | None, *,
                 force: bool = False) -> None:
    """Draw ``n`` samples from ``rt``'s bundle and write them to ``output``.

    Raises:
        InputError: a missing or bad ``--n``, a bad output, an existing one without force.
        BundleError: the bundle has no latent density or decoder graph.
    """
    from rich.console import Console

    if n is None:
        raise InputError("--mode generate needs --n N, the number of samples to draw")
    n = check_n(n)
    png = _plan(rt, output)
    check_output(output, rt.bundle.root, force=force, folder=png)
    load_density(rt.bundle, rt.precision)  # refuses before any work
    samples = rt.generate(n, seed=seed)
    check_finite_output(samples, "reconstruction")
    if png:
        with atomic_dir(output, replace=True) as tmp:
            write_images(samples, tmp)
        written = f"{output}/ ({n} PNG files)"
    else:
        if rt.contract.is_image:  # stacks are stored channels-last, as run writes them
            samples = samples[:, 0] if samples.shape[1] == 1 else \
                samples.transpose(0, 2, 3, 1)
        write_array(output, samples)
        written = f"{output} {tuple(samples.shape)}"
    Console(stderr=True).print(f"generate: {n} sample(s), seed {seed}, with {rt.backend} "
                               f"-> {written}", highlight=False)
