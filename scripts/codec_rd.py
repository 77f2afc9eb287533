"""Rate-distortion on scikit-image's photos: ours (a transform-codec bundle, metaae-edge
export-codec), the dense-code autoencoder bundles, the fitted 8x8 KLT numpy codec, the int8
PCA codec, JPEG and WebP at equal file bytes (metaae_edge/evaluate/codec_rd.py).

    python scripts/codec_rd.py --codec CODEC [--bundles B8,B16,B32] [--rates 0.25,0.5,1] [--out DIR]
    python scripts/codec_rd.py --codec CODEC --split halves [--postfilter auto] --out DIR
        # per photo: a bundle fitted on the top half (DIR/fits/PHOTO), scored on the bottom half

Prints PSNR per photo at each rate, then per method the mean, its 95% t interval, the mean
bits/pixel actually used and the paired difference to JPEG; writes DIR/rd.json and the
plot DIR/rd.png (mean PSNR against mean bits/pixel, one line per method).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metaae_edge.evaluate.codec_rd import (
    EVAL_PHOTOS,
    RDConfig,
    rate_distortion,
    rate_distortion_halves,
    summarise,
)

ORDER = ("ours", "ours-support", "dense-ae", "klt", "pca-int8", "jpeg", "webp")


def _plot(summary: dict, path: Path, split: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for m in ORDER:
        pts = sorted((k[1], v) for k, v in summary.items() if k[0] == m)
        if not pts:
            continue
        x = [v["bpp"] for _, v in pts]
        y = [v["psnr"] for _, v in pts]
        ax.errorbar(x, y, yerr=[v["ci"] for _, v in pts], marker="o", capsize=3, label=m)
    ax.set_xlabel("bits per pixel (file bytes, mean over photos)")
    ax.set_ylabel("PSNR dB (mean over photos, 95% t interval)")
    what = "bottom halves, codec fitted per photo on the top half" if split == "halves" \
        else "codecs fitted on motorcycle_left"
    ax.set_title(f"{len(EVAL_PHOTOS)} grayscale scikit-image photos ({what})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", default="", help="comma-separated dense-code bundles")
    ap.add_argument("--codec", default=None, help="transform-codec bundle (ours)")
    ap.add_argument("--split", default="photos", choices=("photos", "halves"))
    ap.add_argument("--postfilter", default="none", help="export-codec --postfilter (halves)")
    ap.add_argument("--postfilter-steps", type=int, default=1000, help="(halves)")
    ap.add_argument("--rates", default="0.25,0.5,1")
    ap.add_argument("--photos", default=",".join(EVAL_PHOTOS))
    ap.add_argument("--out", default="codec_rd")
    args = ap.parse_args()
    cfg = RDConfig(rates=tuple(float(r) for r in args.rates.split(",")),
                   photos=tuple(args.photos.split(",")),
                   bundles=tuple(b for b in args.bundles.split(",") if b), codec=args.codec)
    out = Path(args.out)
    progress = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if args.split == "halves":
        from metaae_edge.pipeline.codec_export import CodecExportOptions, export_codec

        def export(images, dest):
            opts = CodecExportOptions(out=dest, postfilter=args.postfilter, force=True,
                                      postfilter_steps=args.postfilter_steps)
            return export_codec(images, opts).bundle
        rows = rate_distortion_halves(cfg, str(out / "fits"), export, progress=progress)
    else:
        rows = rate_distortion(cfg, progress=progress)
    methods = [m for m in ORDER if any(r["method"] == m for r in rows)]
    for rate in cfg.rates:
        print(f"\nPSNR dB at {rate} bit/pixel (bits/pixel used)")
        print("| photo | " + " | ".join(methods) + " |")
        print("| --- " * (len(methods) + 1) + "|")
        for photo in cfg.photos:
            cells = []
            for m in methods:
                r = next((r for r in rows if r["method"] == m and r["photo"] == photo
                          and r["rate"] == rate), None)
                cells.append("-" if r is None else f"{r['psnr']:.2f} ({r['bpp']:.3f})")
            print(f"| {photo} | " + " | ".join(cells) + " |")
    summary = summarise(rows)
    print("\n| method | rate | mean PSNR dB ± 95% | mean bpp | minus JPEG dB ± 95% | photos "
          "above JPEG |")
    print("| --- | --- | --- | --- | --- | --- |")
    for rate in cfg.rates:
        for m in methods:
            s = summary.get((m, rate))
            if s is None:
                continue
            print(f"| {m} | {rate} | {s['psnr']:.2f} ± {s['ci']:.2f} (n={s['n']}) | "
                  f"{s['bpp']:.3f} | {s['vs_jpeg']:+.2f} ± {s['vs_jpeg_ci']:.2f} | "
                  f"{s['wins']}/{s['n']} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "rd.json").write_text(json.dumps(
        {"config": {"rates": cfg.rates, "photos": cfg.photos, "bundles": cfg.bundles,
                    "codec": cfg.codec, "split": args.split, "postfilter": args.postfilter,
                    "postfilter_steps": args.postfilter_steps},
         "rows": rows}, indent=1, default=float))
    _plot(summary, out / "rd.png", args.split)
    print(f"\nwrote {out / 'rd.json'} and {out / 'rd.png'}")


if __name__ == "__main__":
    main()
