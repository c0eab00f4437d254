"""Checkpoints as a folder of plain files that never execute code when read.

    config.json        what rebuilds the model: encoder name, decoder sizes, decoding defaults
    vocab.json         the vocabulary, index order matters
    model.safetensors  decoder.* tensors, plus encoder.* where the encoder was fine-tuned

Files are written to a temporary folder and renamed into place, so a crash never leaves a
half-written checkpoint behind. The config holds no paths: nothing in it can point outside,
and only the fixed file names above are ever opened, never through a link that leaves the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .decoder import ATTENTION_KINDS, Decoder, DecoderConfig
from .encoders import get_spec
from .vocab import Vocabulary

FORMAT = "captioner-checkpoint"
VERSION = 1
CONFIG, VOCAB, WEIGHTS = "config.json", "vocab.json", "model.safetensors"
TRAINING = "training.safetensors"  # optional: optimizer tensors, for --resume
MAX_JSON_BYTES = 4 << 20  # config and vocabulary are KBs; anything this big is refused unread
MAX_LEN = 1000  # a longer caption limit would let a model that never ends keep decoding


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or inconsistent; the message names the file and problem."""


@dataclass
class CheckpointData:
    encoder: str
    fine_tune: bool
    decoder_config: DecoderConfig
    vocab: Vocabulary
    decoder_state: dict[str, torch.Tensor]
    encoder_state: dict[str, torch.Tensor] = field(default_factory=dict)
    max_len: int = 20
    no_repeat_ngram: int = 0  # decoding default: 0, or no n words in a row twice (beam_search)
    extra: dict = field(default_factory=dict)  # training state and notes, JSON only
    training_tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # optimizer state


def save_checkpoint(path: str | Path, data: CheckpointData, half: bool = True) -> Path:
    """Write the folder atomically: everything goes to a sibling temp folder, then one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide a shared checkpoint from other users
    try:
        config = {
            "format": FORMAT,
            "version": VERSION,
            "encoder": {"name": data.encoder, "fine_tune": data.fine_tune},
            "decoder": data.decoder_config.to_dict(),
            "max_len": data.max_len,
            "no_repeat_ngram": data.no_repeat_ngram,
            "extra": data.extra,
        }
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        data.vocab.save(tmp / VOCAB)
        tensors = {f"decoder.{k}": v for k, v in data.decoder_state.items()}
        tensors.update({f"encoder.{k}": v for k, v in data.encoder_state.items()})
        tensors = {
            k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in tensors.items()
        }
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        if data.training_tensors:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in data.training_tensors.items()},
                str(tmp / TRAINING),
                metadata={"format": FORMAT},
            )
        if (
            path.is_dir()
        ):  # keep what else the folder holds (a model card), not old checkpoint files
            for f in path.iterdir():
                if f.name not in (CONFIG, VOCAB, WEIGHTS, TRAINING):
                    (shutil.copytree if f.is_dir() else shutil.copy2)(f, tmp / f.name)
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return path
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_checkpoint(folder: str | Path) -> bool:
    """Whether `folder` looks like a checkpoint (holds a config.json); `load_checkpoint` says
    whether it is a good one."""
    return (Path(folder) / CONFIG).is_file()


def find_checkpoints(root: str | Path) -> list[Path]:
    """Checkpoint folders directly under `root`, `default` first, the rest by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and is_checkpoint(p)]
    return sorted(found, key=lambda p: (p.name != "default", p.name))


def attention_kind(folder: str | Path) -> str:
    """A checkpoint's kind of attention, "soft" or "hard", read from its config alone (cheap:
    no weights). CheckpointError if the config cannot be read or names another kind."""
    folder = Path(folder)
    config = _read_json(_member(folder, CONFIG))
    decoder = config.get("decoder")
    kind = decoder.get("attention", "soft") if isinstance(decoder, dict) else None
    if kind not in ATTENTION_KINDS:
        raise CheckpointError(f"{folder / CONFIG}: unknown attention {kind!r}")
    return kind


def _member(folder: Path, name: str) -> Path:
    """`folder/name`, refused where a link makes it point outside the checkpoint folder."""
    file = folder / name
    if folder.resolve() not in file.resolve().parents:
        raise CheckpointError(
            f"{file}: links to {file.resolve()}, outside the checkpoint folder; refused"
        )
    return file


def _check_json_size(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise CheckpointError(
            f"{path}: {size} bytes is too large for a checkpoint's JSON file "
            f"(at most {MAX_JSON_BYTES >> 20} MB)"
        )


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing; a checkpoint folder needs {CONFIG}, {VOCAB} and {WEIGHTS}"
        )
    _check_json_size(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def load_checkpoint(path: str | Path) -> CheckpointData:
    """Read and cross-check a checkpoint folder; any inconsistency is a `CheckpointError`."""
    path = Path(path)
    backup = path.with_name(f".{path.name}.old")
    if not path.exists() and backup.is_dir():
        path = backup  # a save was killed between its two renames: the previous checkpoint is whole
    if not path.is_dir():
        if path.is_file():
            raise CheckpointError(
                f"{path}: a checkpoint is a folder with {CONFIG}, {VOCAB} and {WEIGHTS}"
            )
        raise CheckpointError(f"{path}: no such checkpoint folder")
    config_path = _member(path, CONFIG)
    config = _read_json(config_path)
    if config.get("format") != FORMAT:
        raise CheckpointError(
            f"{config_path}: not a captioner checkpoint (format={config.get('format')!r})"
        )
    if config.get("version") != VERSION:
        raise CheckpointError(f"{config_path}: unsupported version {config.get('version')!r}")
    try:
        encoder = config["encoder"]["name"]
        fine_tune = bool(config["encoder"].get("fine_tune", False))
        # a config without these flags predates them: its decoder has neither
        decoder_config = DecoderConfig(
            **{"deep_output": False, "coverage": False, **config["decoder"]}
        )
        max_len = int(config.get("max_len", 20))
        no_repeat_ngram = config.get("no_repeat_ngram", 0)
        if isinstance(no_repeat_ngram, bool) or not isinstance(no_repeat_ngram, int):
            raise ValueError(f"no_repeat_ngram must be a whole number, not {no_repeat_ngram!r}")
        for flag in ("deep_output", "coverage"):
            if not isinstance(getattr(decoder_config, flag), bool):
                raise ValueError(
                    f"decoder.{flag} must be true or false, not {getattr(decoder_config, flag)!r}"
                )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{config_path}: incomplete or malformed config ({e})") from None
    if not 1 <= max_len <= MAX_LEN:
        raise CheckpointError(f"{config_path}: max_len={max_len} is not between 1 and {MAX_LEN}")
    if not 0 <= no_repeat_ngram <= MAX_LEN:
        raise CheckpointError(
            f"{config_path}: no_repeat_ngram={no_repeat_ngram} is not between 0 and {MAX_LEN}"
        )
    try:
        spec = get_spec(encoder)
    except ValueError as e:
        raise CheckpointError(f"{config_path}: {e}") from None
    if decoder_config.encoder_dim != spec.channels:
        raise CheckpointError(
            f"{config_path}: decoder.encoder_dim={decoder_config.encoder_dim} but "
            f"{encoder} gives {spec.channels} channels"
        )
    vocab_path = _member(path, VOCAB)
    if not vocab_path.is_file():
        raise CheckpointError(f"{vocab_path}: missing")
    _check_json_size(vocab_path)
    try:
        vocab = Vocabulary.load(vocab_path)
    except RecursionError:
        raise CheckpointError(f"{vocab_path}: not a vocabulary file (nested too deeply)") from None
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    if len(vocab) != decoder_config.vocab_size:
        raise CheckpointError(
            f"{vocab_path}: {len(vocab)} words, but {CONFIG} says "
            f"vocab_size={decoder_config.vocab_size}"
        )
    weights_path = _member(path, WEIGHTS)
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({e})") from None
    for k, v in tensors.items():
        if not (v.is_floating_point() or k.endswith(".num_batches_tracked")) or v.is_complex():
            raise CheckpointError(f"{weights_path}: tensor {k} is {v.dtype}, not floating point")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{weights_path}: tensor {k} holds NaN or infinite values")
    decoder_state = {
        k[len("decoder.") :]: v.float() for k, v in tensors.items() if k.startswith("decoder.")
    }
    encoder_state = {
        k[len("encoder.") :]: v.float() for k, v in tensors.items() if k.startswith("encoder.")
    }
    unknown = [k for k in tensors if not k.startswith(("decoder.", "encoder."))]
    if unknown:
        raise CheckpointError(f"{weights_path}: unexpected tensors {unknown[:5]}")
    if fine_tune and not encoder_state:
        raise CheckpointError(
            f"{weights_path}: config says the encoder was fine-tuned but holds no encoder.* tensors"
        )
    try:
        with torch.device("meta"):  # shapes only: a config claiming huge sizes allocates nothing
            expected = Decoder(decoder_config).state_dict()
    except (RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{config_path}: the decoder sizes make no model ({e})") from None
    check_state(expected, decoder_state, weights_path)
    training_tensors = {}
    training_path = _member(path, TRAINING)
    if training_path.is_file():
        try:
            training_tensors = load_file(str(training_path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(
                f"{training_path}: not a readable safetensors file ({e})"
            ) from None
    extra = config.get("extra") or {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"{config_path}: 'extra' must be a JSON object")
    return CheckpointData(
        encoder=encoder,
        fine_tune=fine_tune,
        decoder_config=decoder_config,
        vocab=vocab,
        decoder_state=decoder_state,
        encoder_state=encoder_state,
        max_len=max_len,
        no_repeat_ngram=no_repeat_ngram,
        extra=extra,
        training_tensors=training_tensors,
    )


def load_state_checked(
    module: torch.nn.Module, state: dict[str, torch.Tensor], where: Path | str, strict: bool = True
) -> None:
    """`load_state_dict` with one readable message for missing, extra or mis-shaped tensors."""
    check_state(module.state_dict(), state, where, strict)
    module.load_state_dict(state, strict=strict)


def check_state(
    own: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    where: Path | str,
    strict: bool = True,
) -> None:
    """Refuse `state` unless its names and shapes are those of `own` (a module's state_dict)."""
    missing = [k for k in own if k not in state] if strict else []
    extra = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {missing[:5]}")
    if extra:
        problems.append(f"unexpected {extra[:5]}")
    if wrong:
        problems.append(f"shape mismatch {wrong[:5]}")
    if problems:
        raise CheckpointError(f"{where}: tensors do not fit the model: {'; '.join(problems)}")
