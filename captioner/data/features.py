"""Encode a data set once and keep the features on disk (fp16, memory-mapped).

A frozen encoder gives the same features every epoch, so training from a cache spends its time
on the decoder only. 196 x 1280 fp16 values are 0.5 MB per image.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..encoders import ENCODERS, GRID, Encoder
from ..images import ImageError, load_image
from ..options import add_runtime_argument
from .check import check_images
from .karpathy import ImageRecord, load_karpathy, split_records


def cache_paths(cache_dir: str | Path, encoder: str, split: str) -> tuple[Path, Path]:
    stem = Path(cache_dir) / f"{encoder}-{split}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def _load_batch(encoder: Encoder, records: list[ImageRecord]):
    images, bad = [], []
    for r in records:
        try:
            images.append(load_image(r.path))
        except ImageError as e:
            if r.path.is_file():  # missing files were summarised by check_images: no line each
                warnings.warn(f"skipping {r.path}: {e}", stacklevel=2)
            images.append(None)
            bad.append(r.id)
    good = [im for im in images if im is not None]
    x = encoder.preprocess(good) if good else None
    return x, [im is not None for im in images], bad


def default_streams(encoder: Encoder, device: str) -> int:
    """Encoding streams for a cache: on a CPU with PyTorch, one per thread PyTorch may use (two
    streams of one thread each encoded 1.4x the images per second of one stream of two threads on
    this project's 2-core machine: each stream also reads and resizes its own images, and no core
    waits); on a GPU, or with ONNX Runtime (its own threads), one."""
    if str(device).startswith("cuda") or encoder.runtime != "torch":
        return 1
    return max(1, torch.get_num_threads())


@torch.no_grad()
def cache_features(
    encoder: Encoder,
    records: list[ImageRecord],
    cache_dir: str | Path,
    split: str,
    batch_size: int = 16,
    device: str = "cpu",
    streams: int | None = None,
) -> tuple[np.ndarray, dict]:
    """Features (N, 196, C) of `records` in order, computed once and reused while they match.

    A cache of more images serves any leading part of it (training validates on the first
    `--max-val-images` of a split that `python -m captioner features` cached whole).

    `streams` threads each read, resize and encode their own chunks of images (default:
    `default_streams`); PyTorch's threads are shared out among them for the run. Chunks are the
    encoder's CPU batch, at most `batch_size` images.

    Images that cannot be read get zero features and are listed under `bad_ids` in the
    metadata, so that training leaves them out. The file is written under a temporary name
    and renamed when complete: an interrupted run never leaves a cache that looks finished.
    """
    npy, meta_path = cache_paths(cache_dir, encoder.name, split)
    ids = [r.id for r in records]
    if npy.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        if (
            meta.get("ids", [])[: len(ids)] == ids
            and meta.get("encoder") == encoder.name
            and not encoder.fine_tune
        ):
            wanted = set(ids)
            return np.load(npy, mmap_mode="r")[: len(ids)], {
                **meta,
                "ids": ids,
                "bad_ids": [i for i in meta.get("bad_ids", []) if i in wanted],
            }
    npy.parent.mkdir(parents=True, exist_ok=True)
    tmp = npy.with_suffix(".tmp.npy")
    n_pos = GRID * GRID
    out = np.lib.format.open_memmap(
        tmp, mode="w+", dtype=np.float16, shape=(len(records), n_pos, encoder.spec.channels)
    )
    encoder.eval().to(device)
    streams = max(1, streams or default_streams(encoder, device))
    chunk = batch_size if str(device).startswith("cuda") else min(batch_size, encoder.cpu_batch)
    starts = range(0, len(records), chunk)
    bad_ids: list[int] = []

    def encode(start: int) -> tuple[int, np.ndarray, list[int]]:
        """One chunk, read and encoded in a stream's thread: (start, features, bad ids)."""
        batch = records[start : start + chunk]
        x, ok, bad = _load_batch(encoder, batch)
        feats = np.zeros((len(batch), n_pos, encoder.spec.channels), dtype=np.float16)
        if x is not None:
            with torch.no_grad():  # no_grad is per thread: the decorator covers only this one
                feats[np.array(ok)] = (
                    encoder(x.to(device)).cpu().numpy().astype(np.float16)
                )  # (b, 196, C)
        return start, feats, bad

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // streams))  # process-wide: shared out, restored below
    try:
        with (
            ThreadPoolExecutor(max_workers=streams) as pool,
            tqdm(total=len(records), desc=f"encoding {split} ({encoder.name})", unit="img") as bar,
        ):
            for start, feats, bad in pool.map(encode, starts):  # in order, as they finish
                out[start : start + len(feats)] = feats
                bad_ids.extend(bad)
                bar.update(len(feats))
    finally:
        torch.set_num_threads(threads)
    out.flush()
    del out
    meta = {"encoder": encoder.name, "split": split, "ids": ids, "bad_ids": bad_ids}
    tmp_meta = meta_path.with_suffix(".tmp.json")
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp, npy)
    os.replace(tmp_meta, meta_path)  # last: a cache counts as complete only once this exists
    return np.load(npy, mmap_mode="r"), meta


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Cache encoder features of a Karpathy-format data set.", add_help=add_help
    )
    p.add_argument(
        "--data", required=True, help="captions.json / dataset_*.json in Karpathy format"
    )
    p.add_argument("--images", default=None, help="image folder (default: beside the JSON)")
    p.add_argument("--encoder", default="efficientnet-lite2", help=f"one of {', '.join(ENCODERS)}")
    p.add_argument("--encoder-weights", default=None, help="local weights file for the encoder")
    add_runtime_argument(p)
    p.add_argument("--out", required=True, help="cache folder")
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--streams",
        type=int,
        default=None,
        help="threads that each read and encode their own images (default: one per PyTorch "
        "thread on a CPU, one on a GPU or with onnxruntime)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="go on when more than 1%% of a split's images are missing (they get zero "
        "features and are listed as bad)",
    )
    return p


def main(args: argparse.Namespace) -> int:
    if args.encoder not in ENCODERS:
        print(
            f"error: unknown encoder {args.encoder!r}; known: {', '.join(ENCODERS)}",
            file=sys.stderr,
        )
        return 2
    records = load_karpathy(args.data, args.images)
    check_images(
        {split: split_records(records, split) for split in args.splits},
        args.data,
        args.images,
        args.allow_missing,
    )  # before the encoder: a wrong folder ends here
    encoder = Encoder(args.encoder, weights_path=args.encoder_weights)
    encoder.set_runtime(args.encoder_runtime)
    for split in args.splits:
        feats, meta = cache_features(
            encoder,
            split_records(records, split),
            args.out,
            split,
            args.batch_size,
            args.device,
            args.streams,
        )
        print(
            f"{split}: {feats.shape} -> {cache_paths(args.out, args.encoder, split)[0]}"
            + (f" ({len(meta['bad_ids'])} unreadable images)" if meta["bad_ids"] else ""),
            file=sys.stderr,
        )
    return 0
