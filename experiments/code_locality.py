"""Are a tokenizer's codes local? Background codes on the built-in world, measured (issue: quality per minute).

A raster-order LM predicts each code from the codes before it. If a patch's code depends on content far
away (frame-wide normalisation before the code projection, the code-spreading entropy term), the LM must
predict bits that depend on what it has not drawn yet. This measures, on world test clips:

* ``background_codes``: distinct codes among latent positions whose input patch (4 frames x cs x cs
  pixels, plus the receptive-field halo of one patch) is black, and the share of the most common one;
* ``changed_by_object``: the fraction of such background positions whose code changes when one object
  is removed from a two-object clip (positions black in both clips, away from the removed object);
* ``usage``: distinct codes over the clips / codebook size.

    python experiments/code_locality.py --tokenizer runs/tok_tiny [--num-clips 64]

Prints one JSON line. Expect local codes to give ~1 background code and ~0 % changed.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json

import numpy as np
from scipy import ndimage

from tokenizer.api import encode_video, load_tokenizer
from videogen.data import world


def _black_patches(video: np.ndarray, grid: tuple[int, int, int], halo: int = 1) -> np.ndarray:
    """``[t, h, w]`` True where a latent position's input block (and ``halo`` blocks around it) is black."""
    t, h, w = grid
    T, R = video.shape[0], video.shape[1]
    ct, cs = (T - 1) // (t - 1) if t > 1 else 1, R // h
    lit = video.max(-1) > 8  # [T, R, R]
    # Causal time blocks: latent frame 0 is frame 0 alone, latent frame k frames 1 + ct(k-1) .. ct k.
    blocks = np.zeros((t, h, w), bool)
    for k in range(t):
        frames = lit[:1] if k == 0 else lit[1 + ct * (k - 1) : 1 + ct * k]
        blocks[k] = frames.any(0).reshape(h, cs, w, cs).any((1, 3))
    grown = ndimage.binary_dilation(blocks, structure=np.ones((1, 3, 3), bool), iterations=halo)
    return ~grown


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", required=True, help="tokenizer workdir")
    parser.add_argument("--num-clips", type=int, default=64, help="world test clips with two objects")
    parser.add_argument("--halo", type=int, default=1, help="latent positions around lit patches not counted")
    args = parser.parse_args(argv)
    ae, quantizer, config = load_tokenizer(args.tokenizer)
    data = dict(config.data)
    cfg = world.WorldConfig(
        resolution=int(data["resolution"]), num_frames=int(data["num_frames"]), min_objects=2, max_objects=2
    )
    specs = [world.sample_clip(cfg, "test", i) for i in range(args.num_clips)]
    videos = np.stack([world.render(s) for s in specs])
    alone = np.stack([world.render(dataclasses.replace(s, objects=s.objects[:1])) for s in specs])
    codes = np.asarray(encode_video(ae, quantizer, videos))
    codes_alone = np.asarray(encode_video(ae, quantizer, alone))
    grid = codes.shape[1:]
    counts, changed, total = collections.Counter(), 0, 0
    for v, a, c, ca in zip(videos, alone, codes, codes_alone):
        black = _black_patches(v, grid, args.halo)
        counts.update(c[black].tolist())
        both = black & _black_patches(a, grid, args.halo)
        changed += int((c[both] != ca[both]).sum())
        total += int(both.sum())
    codebook = int(quantizer.codebook_size) if hasattr(quantizer, "codebook_size") else None
    result = {
        "tokenizer": args.tokenizer,
        "clips": args.num_clips,
        "grid": list(grid),
        "halo": args.halo,
        "background_positions": sum(counts.values()),
        "background_codes": len(counts),
        "top_background_code_share": counts.most_common(1)[0][1] / max(sum(counts.values()), 1),
        "changed_by_object": changed / max(total, 1),
        "usage": len(np.unique(codes)) / codebook if codebook else None,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
