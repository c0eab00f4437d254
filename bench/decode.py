"""Beam-search decoding speed: our batched search vs the tutorial's one-image-at-a-time search.

    python -m bench.decode [--checkpoint DIR] [--sizes both] [--images 16] [--repeats 5]

Features are encoded once up front; only decoding is timed. Both searches load the same
weights, so the captions must agree; any that do not are listed with the likely reason.
Two models by default: the default checkpoint, and random weights at the tutorial's own sizes
(512/512/512, vocabulary 1000), the like-for-like comparison with the tutorial's code.
"""

from __future__ import annotations

import torch

from captioner.beam import beam_search

from . import straightforward as sf
from .common import (
    add_sizes_argument,
    alternate,
    base_parser,
    fmt,
    median_ms,
    models_to_compare,
    photos,
    print_table,
    setup,
    spread,
)


def explain(ours, theirs_score: float, finished_early: bool) -> str:
    """Why two captions from the same weights differ."""
    if abs(ours.score - theirs_score) < 1e-4:
        return "tie (equal scores, different words)"
    if ours.score > theirs_score:
        return (
            "ours scores higher: after a hypothesis ends ours refills to k live beams, "
            "the tutorial's beam shrinks"
            if finished_early
            else "ours scores higher"
        )
    return "tutorial scores higher"


def compare(model, what: str, pictures, args, results: dict, key: str) -> None:
    """Our batched search against the tutorial's per-image search on one model; prints tables.

    `results[(key, beam, images)]` gets (ours, tutorial) ms per image."""
    max_len = args.max_len or model.max_len
    vocab = model.vocab
    features = model.encode(pictures)  # (N, 196, C)
    one = features[:1]  # (1, 196, C): the astronaut
    tutorial = sf.DecoderWithAttention.from_decoder(model.decoder).eval()
    decoder = model.inference_decoder()  # what Captioner.decode runs
    banned = (vocab.start, vocab.pad)  # as Captioner.decode calls it
    print(
        f"# model: {what}; {args.images} photos; max_len {max_len}; medians of "
        f"{3 * args.repeats} (1 image) and {max(3, args.repeats // 2 + 1)} ({args.images} images) "
        f"alternated runs",
        flush=True,
    )

    rows, disagreements, agree, total = [], [], 0, 0
    for k in args.beams:

        def ours_one(k=k):
            return beam_search(decoder, one, vocab.start, vocab.end, k, max_len, banned=banned)

        def theirs_one(k=k):
            return sf.caption_images(tutorial, one, vocab.start, vocab.end, k, max_len)

        last: dict[str, list] = {}  # the latest answers, for the agreement check below

        def ours_all(k=k):
            last["ours"] = beam_search(
                decoder, features, vocab.start, vocab.end, k, max_len, banned=banned
            )

        def theirs_all(k=k):
            last["tutorial"] = sf.caption_images(
                tutorial, features, vocab.start, vocab.end, k, max_len
            )

        # one image is quick and noisy: three times the rounds
        t = alternate(
            {"ours 1": ours_one, "tutorial 1": theirs_one}, 3 * args.repeats, clock=args.clock
        )
        o, s = median_ms(t["ours 1"]), median_ms(t["tutorial 1"])
        results[(key, k, 1)] = (o, s)
        rows.append(
            [
                k,
                1,
                fmt(o),
                fmt(s),
                spread(t["ours 1"]),
                spread(t["tutorial 1"]),
                f"{o / s:.2f}x time",
                f"{s / o:.1f}x",
            ]
        )
        # the one-image runs above warmed both up; the tutorial's loop is the slow part here
        t = alternate(
            {"ours N": ours_all, "tutorial N": theirs_all},
            max(3, args.repeats // 2 + 1),
            warmup=0,
            clock=args.clock,
        )
        n = features.size(0)
        o, s = median_ms(t["ours N"]) / n, median_ms(t["tutorial N"]) / n
        results[(key, k, n)] = (o, s)
        rows.append(
            [
                k,
                n,
                fmt(o),
                fmt(s),
                spread([x / n for x in t["ours N"]]),
                spread([x / n for x in t["tutorial N"]]),
                f"{o / s:.2f}x time",
                f"{s / o:.1f}x",
            ]
        )

        for i, (a, (tokens, _, score)) in enumerate(zip(last["ours"], last["tutorial"])):
            total += 1
            if a.tokens == tokens:
                agree += 1
                continue
            # did any hypothesis end before the last step (where the two searches part ways)?
            finished_early = len(a.tokens) < max_len or len(tokens) < max_len
            disagreements.append(
                [
                    k,
                    i,
                    " ".join(vocab.itos[w] for w in a.tokens[:8]) + " ..",
                    " ".join(vocab.itos[w] for w in tokens[:8]) + " ..",
                    f"{a.score:.3f}",
                    f"{score:.3f}",
                    explain(a, score, finished_early),
                ]
            )

    print_table(
        [
            "beam",
            "images",
            "ours ms/image",
            "tutorial ms/image",
            "ours range",
            "tutorial range",
            "ours / tutorial",
            "speed-up",
        ],
        rows,
        title=f"Decoding only ({what}; threads {torch.get_num_threads()})",
    )
    print(f"\ncaptions that agree (ours batched vs tutorial per image): {agree} of {total}")
    if disagreements:
        print_table(
            ["beam", "image", "ours", "tutorial", "ours score", "tutorial score", "why"],
            disagreements,
            title="Disagreements",
        )


def main(argv: list[str] | None = None, results: dict | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], repeats=5)
    p.add_argument("--images", type=int, default=16, help="images in the batched comparison")
    p.add_argument("--beams", type=int, nargs="+", default=[3, 5])
    p.add_argument("--max-len", type=int, default=None, help="default: the model's (20)")
    p.add_argument("--no-thread-sweep", action="store_true", help="skip the 1-vs-2 threads table")
    add_sizes_argument(p)
    args = p.parse_args(argv)
    setup(args)
    pictures = photos(args.images)
    results = {} if results is None else results
    models = models_to_compare(args)
    for key, model, what in models:
        compare(model, what, pictures, args, results, key)
    model = models[0][1]
    vocab, decoder = model.vocab, model.inference_decoder()
    features = model.encode(pictures)  # (N, 196, C)
    one = features[:1]
    max_len = args.max_len or model.max_len
    banned = (vocab.start, vocab.pad)
    if not args.no_thread_sweep:
        default_threads = torch.get_num_threads()
        sweep = {}
        for n_threads in sorted({1, default_threads}):

            def run(n_threads=n_threads):
                torch.set_num_threads(n_threads)
                return beam_search(
                    decoder, features, vocab.start, vocab.end, 3, max_len, banned=banned
                )

            sweep[f"{n_threads}"] = run
        for n_threads in sorted({1, default_threads}):

            def run_one(n_threads=n_threads):
                torch.set_num_threads(n_threads)
                return beam_search(decoder, one, vocab.start, vocab.end, 3, max_len, banned=banned)

            sweep[f"{n_threads} one"] = run_one
        t = alternate(sweep, args.repeats, clock=args.clock)
        torch.set_num_threads(default_threads)
        n = features.size(0)
        rows = [
            [
                name.split()[0],
                "1" if "one" in name else str(n),
                fmt(median_ms(v) / (1 if "one" in name else n)),
            ]
            for name, v in t.items()
        ]
        print_table(
            ["torch threads", "images", "ours beam-3 ms/image"],
            rows,
            title="Threads (ours, beam 3)",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
