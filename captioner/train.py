"""Train a captioner, in the style of torchvision's reference scripts.

    python -m captioner train --data DIR/captions.json --out runs/NAME [--resume]
    python -m captioner train --data MINE/captions.json --out runs/mine --init-from checkpoints/default
    torchrun --nproc_per_node 2 -m captioner train ...      # DistributedDataParallel

Frozen encoders train from a feature cache (encoded once, fp16); `--fine-tune` encodes images
on the fly and trains the encoder's last stages too. `OUT/last/` is written atomically after
every epoch (and every `--save-every` steps) with the optimizer state for `--resume`;
`OUT/best/` keeps the weights with the best validation BLEU-4 (fp16, ready to ship).
`--init-from` starts a new run from a trained model's weights and vocabulary (e.g. to go on
training the default model on more or other data) with a fresh optimizer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data.check import check_images
from .data.features import cache_features
from .data.grounding import mention_targets
from .data.karpathy import DataError, ImageRecord, image_size, load_karpathy, split_records
from .decoder import ATTENTION_KINDS, HARD_DECODING, DecoderConfig, caption_loss
from .encoders import ENCODERS, GRID
from .evaluate import evaluate_captions
from .hard_attention import HardAttentionObjective
from .images import load_image
from .model import Captioner
from .options import add_decoding_arguments
from .vocab import SLOT, SLOT_PLURAL, SPECIALS, Vocabulary

DEFAULT_LR = 4e-4  # the decoder's Adam learning rate
RNG_STATE = "rng.cpu"  # the CPU random generator's state among last/'s training tensors


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train a Show, Attend and Tell captioner.", add_help=add_help
    )
    p.add_argument("--data", required=True, help="Karpathy-format captions.json / dataset_*.json")
    p.add_argument("--images", default=None, help="image folder (default: beside the JSON)")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="train even when more than 1%% of the train or val images are missing "
        "(they are left out); without it such a run stops before any work",
    )
    p.add_argument("--out", required=True, help="run folder: last/, best/, curve.png, log.jsonl")
    p.add_argument("--cache", default=None, help="feature cache folder (default: OUT/features)")
    p.add_argument("--encoder", default="efficientnet-lite2", help=f"one of {', '.join(ENCODERS)}")
    p.add_argument("--encoder-weights", default=None, help="local encoder weights file")
    p.add_argument(
        "--fine-tune",
        action="store_true",
        help="also train the encoder's last stages (with --resume: the paper's second "
        "stage, which starts a new optimizer)",
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"decoder learning rate (default {DEFAULT_LR}; with --resume: keep the run's own)",
    )
    p.add_argument("--encoder-lr", type=float, default=1e-4)
    p.add_argument("--alpha-c", type=float, default=1.0, help="doubly stochastic attention weight")
    p.add_argument(
        "--alpha-box",
        type=float,
        default=0.0,
        help="attention supervision weight: -log(attention inside the named object's "
        "box) at object words; needs `objects` with boxes and mentions (our scenes)."
        " 0, the paper's setting, leaves attention unsupervised",
    )
    p.add_argument("--grad-clip", type=float, default=5.0)
    p.add_argument("--min-word-freq", type=int, default=5)
    p.add_argument("--max-len", type=int, default=20, help="longest training/generated caption")
    p.add_argument("--embed-dim", type=int, default=DecoderConfig.embed_dim)
    p.add_argument("--attention-dim", type=int, default=DecoderConfig.attention_dim)
    p.add_argument("--decoder-dim", type=int, default=DecoderConfig.decoder_dim)
    p.add_argument("--dropout", type=float, default=DecoderConfig.dropout)
    p.add_argument(
        "--deep-output",
        action=argparse.BooleanOptionalAction,
        default=DecoderConfig.deep_output,
        help="predict words from the LSTM state, the previous word and the attended "
        "context (the paper's eq. 7; default), or from the LSTM state alone",
    )
    p.add_argument(
        "--coverage",
        action="store_true",
        help="let the attention see how much each position was attended so far "
        "(not in the paper; helps the decoder move on to the next object)",
    )
    p.add_argument(
        "--attention",
        choices=ATTENTION_KINDS,
        default=DecoderConfig.attention,
        help="soft: the context is the attention-weighted mean (the paper's 4.2, default); "
        "hard: one sampled grid cell per word, trained by REINFORCE (the paper's 4.1)",
    )
    p.add_argument(
        "--hard-decoding",
        choices=HARD_DECODING,
        default=DecoderConfig.hard_decoding,
        help="a hard model's context when captioning (and in validation): the expected one "
        "(default, as the paper's authors caption) or the most likely cell's; saved with the model",
    )
    p.add_argument(
        "--reinforce-weight",
        type=float,
        default=0.1,
        help="hard attention: lambda_r, the weight of the REINFORCE term (the authors' 1/10)",
    )
    p.add_argument(
        "--entropy-weight",
        type=float,
        default=0.002,
        help="hard attention: lambda_e, the weight of the attention entropy bonus",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=5,
        help="stop after this many epochs without a better validation BLEU-4",
    )
    add_decoding_arguments(p, training=True)
    p.add_argument("--max-val-images", type=int, default=500)
    p.add_argument("--save-every", type=int, default=0, help="also save last/ every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="CHECKPOINT",
        help="start a new run from this model's weights, sizes and vocabulary "
        "(a fresh optimizer; epochs count from 1)",
    )
    p.add_argument(
        "--add-words",
        action="store_true",
        help="with --init-from: add the new data's words seen at least --min-word-freq "
        "times to the model's vocabulary (else they train as <unk>)",
    )
    p.add_argument(
        "--test-only",
        action="store_true",
        help="only evaluate OUT/best (or OUT/last) on the validation split",
    )
    return p


# ---------------------------------------------------------------------------- data


def pad_captions(captions: list[list[int]], pad: int) -> torch.Tensor:
    longest = max(len(c) for c in captions)
    out = torch.full((len(captions), longest), pad, dtype=torch.long)  # (B, T+1)
    for i, c in enumerate(captions):
        out[i, : len(c)] = torch.tensor(c)
    return out


class CaptionBatches:
    """(image row, caption) pairs, shuffled per epoch with a seed, cut into batches (each
    yielded longest caption first, the order `Decoder.forward` steps in).

    The order of epoch e is fixed by (seed, e), so a run resumed at step s of an epoch sees
    exactly the batches it had not seen; under DDP each rank takes every world-th batch.
    With `grid` (for `--alpha-box`), each batch also carries attention targets (B, T, P) built
    from the records' object boxes; without it, None.
    """

    def __init__(
        self,
        records: list[ImageRecord],
        vocab: Vocabulary,
        max_len: int,
        batch_size: int,
        seed: int,
        skip_ids: set[int] = frozenset(),
        grid: int | None = None,
    ):
        self.pairs = []
        self.targets: list[dict[int, np.ndarray]] | None = [] if grid else None
        rows = [(row, r) for row, r in enumerate(records) if r.id not in skip_ids]
        for row, r in tqdm(
            rows, desc="object boxes", unit="image", disable=not grid, mininterval=2.0
        ):
            if grid:
                size = image_size(r) if r.objects else (1, 1)
                self.targets.extend(mention_targets(r.objects, size, len(r.captions), grid))
            self.pairs.extend((row, vocab.encode(tokens, max_len)) for tokens in r.captions)
        self.batch_size = batch_size
        self.seed = seed
        self.pad = vocab.pad
        self.grid = grid

    def box_targets(self, batch: list[int], steps: int) -> torch.Tensor:
        """(B, T, P): at step t, the coverage of the box that token t names (zero if none)."""
        out = torch.zeros(len(batch), steps, self.grid * self.grid)  # (B, T, P)
        for i, pair in enumerate(batch):
            for token, cover in self.targets[pair].items():
                if token < steps - 1:  # the last step predicts `<end>`; truncated tokens drop out
                    out[i, token] = torch.from_numpy(cover)
        return out

    def num_batches(self, world: int = 1) -> int:
        return math.ceil(math.ceil(len(self.pairs) / self.batch_size) / world)

    def epoch(self, epoch: int, rank: int = 0, world: int = 1, start_step: int = 0):
        g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        order = torch.randperm(len(self.pairs), generator=g).tolist()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        batches = batches[rank::world][: self.num_batches(world)]
        while len(batches) < self.num_batches(world):  # equal step counts on every rank
            batches.append(batches[0])
        for batch in batches[start_step:]:
            # longest caption first, as the decoder steps through them: no reordering there
            batch = sorted(batch, key=lambda i: -len(self.pairs[i][1]))
            rows = [self.pairs[i][0] for i in batch]
            captions = pad_captions([self.pairs[i][1] for i in batch], self.pad)  # (B, T+1)
            targets = (
                None if self.targets is None else self.box_targets(batch, captions.size(1) - 1)
            )
            yield rows, captions, targets


class FeatureSource:
    """Features for a batch of image rows: from the fp16 cache, or encoded now when fine-tuning.

    `bad_ids`: the images the cache could not read (zero features), which training leaves out.
    """

    def __init__(
        self,
        model: Captioner,
        records: list[ImageRecord],
        cache: np.ndarray | None,
        bad_ids: Iterable[int] = (),
    ):
        self.model, self.records, self.cache = model, records, cache
        self.bad_ids = set(bad_ids)

    def __call__(self, rows: list[int], device: str) -> torch.Tensor:
        if self.cache is not None:
            idx = np.asarray(rows)
            order = np.argsort(idx)  # memmaps read fastest in file order
            feats = np.empty((len(rows),) + self.cache.shape[1:], dtype=np.float32)
            feats[order] = self.cache[idx[order]]
            return torch.from_numpy(feats).to(device)  # (B, 196, C)
        images = [load_image(self.records[r].path) for r in rows]
        x = self.model.encoder.preprocess(images).to(device)  # (B, 3, S, S)
        with torch.set_grad_enabled(self.model.encoder.fine_tune and self.model.decoder.training):
            return self.model.encoder(x)  # (B, 196, C)


# ---------------------------------------------------------------------------- training


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (safetensors) and JSON, so no pickle is needed."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class TrainingModule(nn.Module):
    """Encoder + decoder as one module for DDP; returns the loss of a teacher-forced batch.

    A hard-attention model also gets the REINFORCE terms (`captioner.hard_attention`): each
    training batch samples its locations or uses the expected context, as `hard.draw()` says.
    """

    def __init__(
        self,
        model: Captioner,
        alpha_c: float,
        alpha_box: float = 0.0,
        hard: HardAttentionObjective | None = None,
    ):
        super().__init__()
        self.encoder, self.decoder = model.encoder, model.decoder
        self.alpha_c, self.alpha_box, self.pad = alpha_c, alpha_box, model.vocab.pad
        if hard is None and model.decoder.config.attention == "hard":
            hard = HardAttentionObjective()
        self.hard = hard

    def forward(
        self,
        features: torch.Tensor,
        captions: torch.Tensor,
        box_targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        rule = self.hard.draw() if self.hard is not None and self.training else None
        logits, alphas, cells = self.decoder(features, captions, self.pad, rule)  # (B, T, V) ...
        loss = caption_loss(
            logits, captions, alphas, self.pad, self.alpha_c, box_targets, self.alpha_box
        )
        if self.hard is not None:
            sampled = cells if rule == "sample" else None
            loss = loss + self.hard(logits, captions, alphas, sampled, self.pad)
        return loss


def train_one_epoch(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: CaptionBatches,
    features: FeatureSource,
    epoch: int,
    device: str,
    grad_clip: float = 0.0,
    rank: int = 0,
    world: int = 1,
    start_step: int = 0,
    on_step=None,
) -> float:
    """One pass over this rank's batches from `start_step`; the mean loss. `on_step(step, loss)`
    is called after every optimizer step (to save a checkpoint now and then)."""
    module.train()
    total, count = 0.0, 0
    steps = batches.num_batches(world)
    bar = tqdm(
        batches.epoch(epoch, rank, world, start_step),
        total=steps,
        initial=start_step,
        desc=f"epoch {epoch}",
        unit="batch",
        disable=rank != 0,
    )
    for step, (rows, captions, targets) in enumerate(bar, start=start_step):
        feats = features(rows, device)  # (B, 196, C)
        if targets is not None:
            targets = targets.to(device)  # (B, T, P)
        loss = module(feats, captions.to(device), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(
                [p for p in module.parameters() if p.requires_grad], grad_clip
            )
        optimizer.step()
        total += loss.item()
        count += 1
        bar.set_postfix(loss=f"{total / count:.3f}")
        if on_step is not None:
            on_step(step + 1, total / count)
    return total / count if count else float("nan")  # nan: resumed after the epoch's last step


@torch.no_grad()
def evaluate(
    model: Captioner,
    records: list[ImageRecord],
    features: FeatureSource,
    beam_size: int,
    device: str,
    batch_size: int = 32,
) -> dict:
    """Validation: `python -m captioner evaluate`'s own scoring (`evaluate_captions`, without
    METEOR) on the records' features: BLEU-4, and, where the records list objects, pointing
    accuracy and object recall to watch grounding; plus the first three captions."""
    model.encoder.eval()
    model.decoder.eval()

    def batches():
        for i in range(0, len(records), batch_size):
            rows = list(range(i, min(i + batch_size, len(records))))
            yield [records[r].id for r in rows], features(rows, device)  # ids, (B, 196, C)

    scores = evaluate_captions(model, batches(), records, beam_size, meteor=False)
    result = {"bleu4": scores["BLEU-4"]}
    if scores["counts"]["images_with_objects"]:
        result.update(
            pointing_accuracy=scores["pointing_accuracy"], object_recall=scores["object_recall"]
        )
    return {**result, "samples": [c["caption"] for c in scores["captions"][:3]]}


def grow_vocabulary(model: Captioner, records: list[ImageRecord], min_freq: int) -> list[str]:
    """A model started from another's learns the new data's words seen `min_freq` times or more.

    The slot words start from the mean of the object nouns the model already knows (singular
    for `<obj>`, plural for `<objs>`), so they begin life as "some object".
    """
    frequent = Vocabulary.build([t for r in records for t in r.captions], min_freq).itos[
        len(SPECIALS) :
    ]
    heads = {SLOT: set(), SLOT_PLURAL: set()}
    for r in records:
        for obj in r.objects:
            heads[SLOT].add(obj["words"][0])
            heads[SLOT_PLURAL].add(obj["words"][1])
    return model.add_words(frequent, like={k: sorted(v) for k, v in heads.items()})


def report_unknown_words(vocab: Vocabulary, records: list[ImageRecord], source) -> None:
    """Say how much of the new data the (grown) vocabulary of a model started from another lacks."""
    tokens = [t for r in records for c in r.captions for t in c]
    unknown = sum(t not in vocab.stoi for t in tokens)
    print(
        f"starting from {source}: vocabulary of {len(vocab)} words; {unknown} of {len(tokens)} "
        f"training caption words ({unknown / max(len(tokens), 1):.1%}) are not in it and train "
        f"as <unk>",
        file=sys.stderr,
    )


def plot_curve(history: list[dict], path: Path) -> None:
    """Training loss and validation BLEU-4 per epoch, as a PNG beside the checkpoints."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    ax1.plot(epochs, [h["loss"] for h in history], marker="o")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax2.plot(epochs, [h["bleu4"] for h in history], marker="o", color="tab:green")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation BLEU-4")
    fig.tight_layout()
    fig.savefig(path)


def init_distributed(args) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    cuda = args.device.startswith("cuda")
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend)
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        args.device = f"cuda:{local}"
    if dist.get_rank() == 0:
        print(f"distributed training: {world} processes, {backend} backend", file=sys.stderr)
    return dist.get_rank(), dist.get_world_size()


def check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, in one sentence; None if nothing."""
    if args.init_from and (args.resume or args.test_only):
        return "--init-from starts a new run; it cannot go with --resume or --test-only"
    if args.max_val_images < 1:
        return "--max-val-images must be at least 1"
    if args.encoder not in ENCODERS:
        return f"unknown encoder {args.encoder!r}; known: {', '.join(ENCODERS)}"
    return None


@dataclass
class Start:
    """Where a run starts: its model, progress and (on resume) the optimizer's saved state."""

    model: Captioner
    state: dict
    optimizer_meta: dict | None = None
    optimizer_tensors: dict | None = None


def start_run(
    args: argparse.Namespace, train_records: list[ImageRecord], run: RunFolder, rank: int
) -> Start:
    """A new model, the same model resumed from `OUT/last` (`--resume`, `--test-only`: `OUT/best`
    if it exists), or another model's weights to train on (`--init-from`). CheckpointError if
    the checkpoint cannot be read."""
    state = {"epoch": 0, "step": 0, "best_bleu4": -1.0, "epochs_since_best": 0, "history": []}
    if args.resume or args.test_only:
        source = run.last if (args.resume or not run.best.is_dir()) else run.best
        ckpt = load_checkpoint(source)
        model = Captioner.load(source, encoder_weights=args.encoder_weights)
        state.update(ckpt.extra.get("train_state", {}))
        if rank == 0:
            print(
                f"resuming from {source}: epoch {state['epoch']}, step {state['step']}",
                file=sys.stderr,
            )
        return Start(model, state, ckpt.extra.get("optimizer"), ckpt.training_tensors)
    if args.init_from:
        model = Captioner.load(args.init_from, encoder_weights=args.encoder_weights)
        if args.add_words:
            added = grow_vocabulary(model, train_records, args.min_word_freq)
            if rank == 0:
                print(
                    f"added {len(added)} words to the vocabulary: {' '.join(added[:20])}"
                    + (" ..." if len(added) > 20 else ""),
                    file=sys.stderr,
                )
        if rank == 0:
            report_unknown_words(model.vocab, train_records, args.init_from)
        return Start(model, state)
    vocab = Vocabulary.build([t for r in train_records for t in r.captions], args.min_word_freq)
    model = Captioner.create(
        args.encoder,
        vocab,
        encoder_weights=args.encoder_weights,
        fine_tune=args.fine_tune,
        max_len=args.max_len,
        embed_dim=args.embed_dim,
        attention_dim=args.attention_dim,
        decoder_dim=args.decoder_dim,
        dropout=args.dropout,
        deep_output=args.deep_output,
        coverage=args.coverage,
        attention=args.attention,
        hard_decoding=args.hard_decoding,
    )
    return Start(model, state)


def feature_source(
    model: Captioner,
    records: list[ImageRecord],
    split: str,
    cache_dir: Path,
    device: str,
    missing: set,
    data: str,
    images: str | None = None,
    rank: int = 0,
    world: int = 1,
) -> FeatureSource:
    """The split's features: cached once (rank 0 encodes, the others wait and read), or, when
    the encoder is fine-tuned, the images themselves, read per batch."""
    if model.encoder.fine_tune:  # missing images are left out of training
        return FeatureSource(model, records, None, {r.id for r in records} & missing)
    if world > 1 and rank != 0:
        dist.barrier()
    feats, meta = cache_features(model.encoder, records, cache_dir, split, device=device)
    if world > 1 and rank == 0:
        dist.barrier()
    if len(meta["bad_ids"]) == len(records):
        raise DataError(
            f"{data}: none of the {len(records)} {split} images could be read (e.g. "
            f"{records[0].path}); `python -m captioner check-data --data {data}"
            f"{f' --images {images}' if images else ''}` says why"
        )
    return FeatureSource(model, records, feats, meta["bad_ids"])


def make_optimizer(
    model: Captioner, args: argparse.Namespace, start: Start, fine_tune_starts: bool
) -> torch.optim.Optimizer:
    """Adam over the decoder (and the encoder's trainable stages); a resumed run gets its saved
    state back, except when fine-tuning starts now (the paper's second stage: a new optimizer)."""
    groups = [
        {
            "params": list(model.decoder.parameters()),
            "lr": DEFAULT_LR if args.lr is None else args.lr,
        }
    ]
    if model.encoder.fine_tune:
        groups.append(
            {
                "params": [p for p in model.encoder.parameters() if p.requires_grad],
                "lr": args.encoder_lr,
            }
        )
    optimizer = torch.optim.Adam(groups)
    if start.optimizer_meta is not None and not fine_tune_starts:
        optimizer_from_tensors(optimizer, start.optimizer_tensors, start.optimizer_meta)
        if args.lr is not None:  # a new learning rate for the rest of the run
            optimizer.param_groups[0]["lr"] = args.lr
    return optimizer


class RunFolder:
    """OUT/: last/ (everything to resume, after each epoch and every --save-every steps),
    best/ (fp16 weights of the best validation BLEU-4), log.jsonl and curve.png. Only rank 0
    writes."""

    def __init__(self, out: str | Path, rank: int = 0):
        self.out, self.rank = Path(out), rank
        self.last, self.best = self.out / "last", self.out / "best"

    def save_last(
        self,
        model: Captioner,
        optimizer: torch.optim.Optimizer,
        state: dict,
        run_args: dict,
        epoch: int,
        step: int,
    ) -> None:
        if self.rank != 0:
            return
        tensors, meta = optimizer_to_tensors(optimizer)
        data = model.checkpoint_data(
            {
                "optimizer": meta,
                "train_state": {**state, "epoch": epoch, "step": step},
                "args": run_args,
            }
        )
        # the random stream goes on where it stopped (dropout, hard attention's draws); under
        # DDP every process resumes with rank 0's
        data.training_tensors = {**tensors, RNG_STATE: torch.get_rng_state()}
        save_checkpoint(self.last, data, half=False)

    def record_epoch(
        self, model: Captioner, state: dict, entry: dict, improved: bool, run_args: dict
    ) -> None:
        if self.rank != 0:
            return
        print(json.dumps(entry), file=sys.stderr, flush=True)
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
        if improved:
            model.save(
                self.best,
                half=True,
                extra={
                    "args": run_args,
                    "history": state["history"],
                    "best_bleu4": state["best_bleu4"],
                },
            )
        plot_curve(state["history"], self.out / "curve.png")


def run_arguments(args: argparse.Namespace, model: Captioner) -> dict:
    """The options that made this run, saved with its checkpoints; the model's own sizes and
    decoding settings replace the defaults (they differ on resume and with --init-from)."""
    run_args = {
        k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, type(None)))
    }
    run_args.update(
        {k: v for k, v in model.decoder.config.to_dict().items() if k in run_args},
        encoder=model.encoder.name,
        max_len=model.max_len,
        no_repeat_ngram=model.no_repeat_ngram,
    )
    return run_args


def mean_over_ranks(value: float, device: str, world: int) -> float:
    """The mean of a number over all DDP processes (itself when there is one)."""
    if world == 1:
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t)
    return t.item() / world


def end_of_epoch(
    state: dict, epoch: int, loss: float, result: dict, seconds: float
) -> tuple[dict, bool]:
    """Update the run's progress with an epoch's validation; its log entry, and whether its
    BLEU-4 is the best so far."""
    improved = result["bleu4"] > state["best_bleu4"]
    state["best_bleu4"] = max(state["best_bleu4"], result["bleu4"])
    state["epochs_since_best"] = 0 if improved else state["epochs_since_best"] + 1
    entry = {
        "epoch": epoch + 1,
        "loss": None if math.isnan(loss) else round(loss, 4),
        **{k: None if v is None else round(v, 4) for k, v in result.items() if k != "samples"},
        "seconds": round(seconds, 1),
        "samples": result["samples"],
    }
    state["history"].append(entry)
    return entry, improved


def main(args: argparse.Namespace) -> int:
    problem = check_arguments(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    rank, world = init_distributed(args)
    torch.manual_seed(args.seed)
    run = RunFolder(args.out, rank)
    records = load_karpathy(args.data, args.images)
    train_records = split_records(records, "train")
    val_records = split_records(records, "val")[: args.max_val_images]
    # Before any long work (the model, the feature pass): a wrong image folder ends here, in a
    # sentence, instead of in epochs trained on zero features and a checkpoint of nonsense.
    missing = check_images(
        {"val": val_records} if args.test_only else {"train": train_records, "val": val_records},
        args.data,
        args.images,
        args.allow_missing,
        quiet=rank != 0,
    )
    val_records = [r for r in val_records if r.id not in missing]
    try:
        start = start_run(args, train_records, run, rank)
    except CheckpointError as e:
        doing = f"start from {args.init_from}" if args.init_from else "resume"
        print(f"error: cannot {doing}: {e}", file=sys.stderr)
        return 2
    model, state = start.model, start.state
    if args.no_repeat_ngram is not None:
        model.no_repeat_ngram = args.no_repeat_ngram
    fine_tune_starts = args.fine_tune and not model.encoder.fine_tune
    if fine_tune_starts:  # the paper's second stage: unfreeze the encoder's last stages now
        model.encoder.set_fine_tune(True)
    model.to(args.device)
    run.out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(args.cache) if args.cache else run.out / "features"
    features_of = partial(
        feature_source,
        model,
        cache_dir=cache_dir,
        device=args.device,
        missing=missing,
        data=args.data,
        images=args.images,
        rank=rank,
        world=world,
    )
    val_source = features_of(val_records, "val")
    if args.test_only:
        result = evaluate(model, val_records, val_source, args.val_beam_size, args.device)
        print(json.dumps({"split": "val", **result}))
        return 0

    train_source = features_of(train_records, "train")
    if args.alpha_box and not any(r.objects for r in train_records):
        print(f"error: --alpha-box needs `objects` with boxes in {args.data}", file=sys.stderr)
        return 2
    batches = CaptionBatches(
        train_records,
        model.vocab,
        model.max_len,
        args.batch_size,
        args.seed,
        train_source.bad_ids,
        GRID if args.alpha_box else None,
    )
    hard = None
    if model.decoder.config.attention == "hard":
        hard = HardAttentionObjective(args.reinforce_weight, args.entropy_weight)
        if state.get("hard_baseline") is not None:  # resumed: the baseline goes on
            hard.baseline.fill_(state["hard_baseline"])
    module = TrainingModule(model, args.alpha_c, args.alpha_box, hard)
    optimizer = make_optimizer(model, args, start, fine_tune_starts)
    if world > 1:
        module = nn.parallel.DistributedDataParallel(module)
    run_args = run_arguments(args, model)

    def keep_baseline() -> None:
        """The hard-attention baseline goes with the run's state, for an exact --resume."""
        if hard is not None and not torch.isnan(hard.baseline):
            state["hard_baseline"] = float(hard.baseline)

    def save_every(step: int, loss: float) -> None:
        if args.save_every and step % args.save_every == 0:
            keep_baseline()
            run.save_last(model, optimizer, state, run_args, state["epoch"], step)

    if start.optimizer_tensors and RNG_STATE in start.optimizer_tensors:
        torch.set_rng_state(start.optimizer_tensors[RNG_STATE])
    started = time.time()
    for epoch in range(state["epoch"], args.epochs):
        state["epoch"] = epoch
        t0 = time.time()
        loss = train_one_epoch(
            module,
            optimizer,
            batches,
            train_source,
            epoch,
            args.device,
            args.grad_clip,
            rank,
            world,
            state["step"],
            save_every,
        )
        loss = mean_over_ranks(loss, args.device, world)
        state["step"] = 0
        keep_baseline()
        result = evaluate(model, val_records, val_source, args.val_beam_size, args.device)
        entry, improved = end_of_epoch(state, epoch, loss, result, time.time() - t0)
        run.record_epoch(model, state, entry, improved, run_args)
        run.save_last(model, optimizer, state, run_args, epoch + 1, 0)
        if world > 1:
            dist.barrier()
        if state["epochs_since_best"] >= args.patience:
            if rank == 0:
                print(
                    f"early stop: no better validation BLEU-4 for {args.patience} epochs",
                    file=sys.stderr,
                )
            break
    if rank == 0:
        print(
            f"done in {time.time() - started:.0f} s; best validation BLEU-4 "
            f"{state['best_bleu4']:.4f} -> {run.best}",
            file=sys.stderr,
        )
    if world > 1:
        dist.destroy_process_group()
    return 0
