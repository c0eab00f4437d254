"""Which stamps the encoder's ImageNet classifier names well enough to name them in captions.

    python -m captioner.scenes.stamp_names [--per-stamp 8] [--write]

For every stamp with a `same` name in `stamp_imagenet.json`, draws scenes with it alone on our
usual backgrounds and asks the classifier about the attention a perfect model would have: evenly
over the grid cells of its box. A stamp whose `same` name wins in at least `--threshold` of them
is "classifier-named": its training captions use the slot word, so the model learns to look at
it and let the classifier say what it is. The others keep their curated names from the decoder.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from tqdm import tqdm

from ..data.grounding import box_coverage
from ..encoders import GRID, Encoder
from ..names import imagenet_names
from .backgrounds import BackgroundMaker
from .compose import _composite, _layout
from .stamps import default_stamp_names_path, default_stamps_dir, load_stamps


@torch.no_grad()
def measure(per_stamp: int = 8, seed: int = 0, size: int = 448) -> dict[str, float]:
    """{stamp name: share of its scenes in which the classifier's top name is a `same` name}."""
    data = json.loads(default_stamp_names_path().read_text(encoding="utf-8"))
    stamps = [
        s for s in load_stamps(default_stamps_dir()) if data["stamps"].get(s.name, {}).get("same")
    ]
    encoder = Encoder("efficientnet-lite2").eval()
    names = imagenet_names()
    backgrounds = BackgroundMaker(size)
    rng = np.random.default_rng(seed)
    shares = {}
    for stamp in tqdm(stamps, desc="stamps", unit="stamp"):
        images, weights = [], []
        for _ in range(per_stamp):
            placed = _layout(rng, [stamp], size)
            background = backgrounds.make(rng)
            images.append(_composite(background.pixels, placed))
            cover = box_coverage(placed[0].box, (size, size), GRID).reshape(-1)  # (P,)
            weights.append(cover / cover.sum())
        from PIL import Image

        feats = encoder(encoder.preprocess([Image.fromarray(im) for im in images]))  # (n, P, C)
        context = torch.einsum("np,npc->nc", torch.tensor(np.stack(weights)), feats)  # (n, C)
        name_p, _ = names.name_probs(encoder.classify(context))  # (n, names)
        said = [names.names[i] for i in name_p.argmax(1).tolist()]
        shares[stamp.name] = sum(w in data["stamps"][stamp.name]["same"] for w in said) / per_stamp
    return shares


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-stamp", type=int, default=8)
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write", action="store_true", help="store the result in stamp_imagenet.json")
    args = p.parse_args(argv)
    shares = measure(args.per_stamp, args.seed)
    named = sorted(n for n, share in shares.items() if share >= args.threshold)
    for name, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"{share:5.2f}  {name}")
    print(
        f"{len(named)} of {len(shares)} stamps are classifier-named (>= {args.threshold:.0%})",
        file=sys.stderr,
    )
    if args.write:
        path = default_stamp_names_path()
        data = json.loads(path.read_text(encoding="utf-8"))
        data["classifier_named"] = named
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
