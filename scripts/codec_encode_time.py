"""Time ``TransformCodec.encode`` / ``decode`` of a 512 x 512 grey image: the support photo
(``motorcycle_left``, what export-codec fits on: never an evaluation photo) tiled to 512 rows
and cropped. Prints the best of ``--repeat`` runs per rate and the file's sha256, so two
source trees can be compared byte for byte:

    git archive OLD metaae_edge | tar -x -C /tmp/old
    (cd /tmp && PYTHONPATH=/tmp/old python REPO/scripts/codec_encode_time.py BUNDLE)
    (cd /tmp && PYTHONPATH=REPO python REPO/scripts/codec_encode_time.py BUNDLE)

(run from outside the repository, so that PYTHONPATH picks the tree). BUNDLE: an
export-codec bundle, e.g. ``metaae-edge export-codec`` on the support photo.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--bpp", default="0.5,1,2")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import metaae_edge
    from metaae_edge.evaluate.codec_rd import SUPPORT_PHOTO, load_photo
    from metaae_edge.runtime.codec import TransformCodec

    codec = TransformCodec.load(args.bundle, threads=1)
    img = np.tile(load_photo(SUPPORT_PHOTO), (2, 1))[:512, :512]
    print(f"source {metaae_edge.__file__}; image {img.shape}")
    for bpp in (float(b) for b in args.bpp.split(",")):
        enc, dec = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            data = codec.encode(img, bpp=bpp)
            enc.append(time.perf_counter() - t)
            t = time.perf_counter()
            codec.decode(data)
            dec.append(time.perf_counter() - t)
        print(f"bpp {bpp:g}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}, "
              f"encode {min(enc):.3f} s, decode {min(dec):.3f} s (best of {args.repeat})")


if __name__ == "__main__":
    main()
