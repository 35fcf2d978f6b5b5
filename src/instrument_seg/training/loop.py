"""Training: cues -> anchors -> U-Net with anchor + semantic-diffusion losses (Eq. 5).

A run directory holds ``config.yaml`` (the resolved config), ``checkpoint.pt`` (model, optimizer,
step and the preprocessing contract), ``loss.csv`` (one row per step) and ``summary.json``.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from instrument_seg.config import load_config, save_config, working_size
from instrument_seg.cues.anchors import make_anchors
from instrument_seg.cues.pipeline import FrameCues, dataset_cues
from instrument_seg.data import Dataset
from instrument_seg.errors import InputError
from instrument_seg.fileio import write_json
from instrument_seg.model.checkpoint import (
    checkpoint_payload,
    load_checkpoint,
    model_kwargs,
    save_checkpoint,
)
from instrument_seg.model.contract import CHECKPOINT, NORM_MEAN, NORM_STD
from instrument_seg.model.unet import UNet
from instrument_seg.training.distributed import Distributed, session
from instrument_seg.training.features import FeatureCache, VGG16Features
from instrument_seg.training.losses import AGSDLoss

SETTINGS = ("ss", "tt")
SUPERVISION_LEVELS = (0, 50, 100)
ENDOVIS_FOLDS = ((1, 3), (2, 5), (4, 8), (6, 7))
LOG_FIELDS = ("step", "total", "anc_t", "anc_t1", "fg", "bg", "seconds")


# --- splits ----------------------------------------------------------------------------------


def _endovis_number(name: str) -> int | None:
    prefix = "instrument_dataset_"
    number = name.removeprefix(prefix)
    return int(number) if name.startswith(prefix) and number.isdigit() else None


def split_sequences(
    dataset: Dataset, setting: str, fold: int | None, n_folds: int = 4
) -> tuple[list[int], list[int]]:
    """Indices of the training and test sequences.

    SS learns and infers on every sequence. TT holds out one fold: on EndoVis 2017 the paper's
    folds {1,3}, {2,5}, {4,8}, {6,7} (by ``instrument_dataset_N``), elsewhere sequence ``k`` (in
    name order) belongs to fold ``k % n_folds``.

    Raises:
        InputError: unknown setting, fold out of range, or an empty side of the split.
    """
    if setting not in SETTINGS:
        raise InputError(f"unknown setting '{setting}' (valid: {', '.join(SETTINGS)})")
    everything = list(range(len(dataset.sequences)))
    if setting == "ss":
        return everything, everything
    numbers = [_endovis_number(s.name) for s in dataset.sequences]
    endovis = all(n is not None for n in numbers)
    count = len(ENDOVIS_FOLDS) if endovis else n_folds
    if fold is None or not 0 <= fold < count:
        raise InputError(f"fold {fold} is not valid for setting tt (use 0..{count - 1})")
    if endovis:
        test = [k for k, n in enumerate(numbers) if n in ENDOVIS_FOLDS[fold]]
    else:
        test = [k for k in everything if k % n_folds == fold]
    train = [k for k in everything if k not in test]
    if not test:
        raise InputError(f"fold {fold} of {dataset.root} holds no sequence to test on")
    if not train:
        raise InputError(f"fold {fold} leaves no sequence of {dataset.root} to train on")
    return train, test


def subset(dataset: Dataset, indices: list[int]) -> Dataset:
    return Dataset(dataset.root, [dataset.sequences[k] for k in indices], dataset.layout)


# --- data ------------------------------------------------------------------------------------


@dataclass
class TrainingSet:
    """Everything a training step reads, at working size, held in memory.

    Attributes:
        frames: uint8 (N, H, W, 3) RGB frames.
        a_pos: float32 (N, H, W) positive anchors (or ground truth where supervised).
        a_neg: float32 (N, H, W) negative anchors.
        feats: float32 (N, C, h, w) frozen features, or None when no diffusion term is on.
        pairs: int64 (P, 2) frame indices of the training pairs.
        names: (sequence, frame) of each frame.
    """

    frames: np.ndarray
    a_pos: np.ndarray
    a_neg: np.ndarray
    feats: torch.Tensor | None
    pairs: np.ndarray
    names: list[tuple[str, str]]


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(mask.astype(np.uint8), (size[1], size[0]), cv2.INTER_NEAREST) > 0


def build_training_set(
    dataset: Dataset,
    config: Mapping[str, Any],
    features: VGG16Features | None,
    cache_dir: Path | None = None,
    progress: Callable[[], None] | None = None,
    frame_cues: list[FrameCues] | None = None,
) -> TrainingSet:
    """Cues, anchors (or ground truth), features and pairs of every frame of ``dataset``.

    ``frame_cues`` may hold this dataset's cues computed earlier (with every enabled cue and the
    ground truth), e.g. shared by the runs of an ablation.
    """
    supervision = int(config["train"]["supervision"])
    if supervision not in SUPERVISION_LEVELS:
        raise InputError(
            f"train.supervision must be one of {SUPERVISION_LEVELS} (% of frames), got "
            f"{supervision}"
        )
    if supervision and not dataset.has_masks:
        raise InputError(
            f"train.supervision={supervision} needs ground-truth masks, but {dataset.root} "
            "has frames without them"
        )
    if config["data"]["still_images"]:
        pairs = [
            (a.sequence, a.index, b.sequence, b.index)
            for a, b in dataset.random_pairs(np.random.default_rng(int(config["seed"])))
        ]
    else:
        pairs = [(a.sequence, a.index, b.sequence, b.index) for a, b in dataset.adjacent_pairs()]
    offsets = np.cumsum([0] + [len(s) for s in dataset.sequences])
    flat = np.array([(offsets[s] + i, offsets[t] + j) for s, i, t, j in pairs], np.int64)
    size = working_size(config)
    if frame_cues is None:
        frames = dataset_cues(dataset, config, progress=progress, with_gt=supervision > 0)
    else:
        frames = frame_cues
        if len(frames) != len(dataset):
            raise InputError(f"{len(frames)} precomputed cue sets for {len(dataset)} frames")
    enabled = config["cues"]["enabled"]
    index_in_seq = [i for seq in dataset.sequences for i in range(len(seq))]
    a_pos, a_neg = [], []
    for fc, i in zip(frames, index_in_seq, strict=True):
        if supervision == 100 or (supervision == 50 and i % 2 == 0):
            gt = _resize_mask(fc.gt, size).astype(np.float32)
            pos, neg = gt, 1.0 - gt
        else:
            pos, neg = make_anchors(fc.cues, enabled)
        a_pos.append(pos)
        a_neg.append(neg)
    feats = None
    if features is not None:
        cache = FeatureCache(features, tuple(config["features"]["size"]), cache_dir)
        feats = torch.stack([cache.get(fc.image) for fc in frames])
    return TrainingSet(
        frames=np.stack([fc.image for fc in frames]),
        a_pos=np.stack(a_pos).astype(np.float32),
        a_neg=np.stack(a_neg).astype(np.float32),
        feats=feats,
        pairs=flat,
        names=[(fc.sequence, fc.name) for fc in frames],
    )


def to_input(frames: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> normalised float (N, 3, H, W), the U-Net's input contract."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float()
    mean = torch.tensor(NORM_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(NORM_STD, device=device).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


# --- model, loss, checkpoints ----------------------------------------------------------------


def build_loss(config: Mapping[str, Any]) -> AGSDLoss:
    c = config["loss"]
    return AGSDLoss(
        anchor_form=c["anchor_form"],
        w_pos=float(c["w_pos"]),
        w_neg=float(c["w_neg"]),
        diffusion_form=c["diffusion_form"],
        margins=c["margins"],
        weights=c["weights"],
        weighted_mean=bool(c["weighted_mean"]),
        l2_normalize=bool(c["l2_normalize"]),
        use_fg=bool(c["use_fg"]),
        use_bg=bool(c["use_bg"]),
        upsampling=c["upsampling"],
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise InputError(f"train.device must be auto, cpu or cuda, got '{name}'")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("train.device is cuda but no CUDA device is available")
    return torch.device(name)


def run_config(
    out: str | Path, resume: bool, files: list[str | Path], overrides: list[str]
) -> dict[str, Any]:
    """The config of a run: defaults, or the run's own ``config.yaml`` when resuming, then the
    experiment files and ``key=value`` overrides (e.g. ``train.steps`` to train longer)."""
    saved = Path(out) / "config.yaml"
    base = [saved] if resume and saved.is_file() else []
    return load_config([*base, *files], overrides)


# --- the loop --------------------------------------------------------------------------------


def _batch_order(n_pairs: int, batch: int, seed: int, step: int) -> np.ndarray:
    """Pair indices of ``step``: epochs are seeded permutations, so resuming is exact."""
    per_epoch = max(1, n_pairs // batch) if n_pairs >= batch else 1
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_pairs)
    if n_pairs < batch:
        return np.resize(order, batch)
    return order[k * batch : (k + 1) * batch]


def _prepare_out(out: Path, resume: bool) -> dict[str, Any] | None:
    ckpt = out / CHECKPOINT
    if resume:
        return load_checkpoint(ckpt) if ckpt.is_file() else None
    if out.exists() and any(out.iterdir()):
        raise InputError(f"run directory {out} is not empty (pass --resume to continue it)")
    return None


def train(
    dataset: Dataset,
    out: str | Path,
    config: dict[str, Any],
    setting: str = "ss",
    fold: int | None = None,
    resume: bool = False,
    cache_dir: Path | None = None,
    progress: bool = True,
    frame_cues: list[FrameCues] | None = None,
) -> dict[str, Any]:
    """Trains a U-Net on ``dataset`` and writes the run directory.

    Args:
        dataset: frames to learn from (no labels needed unless ``train.supervision`` > 0).
        out: run directory (created; must be empty unless ``resume``).
        config: resolved config.
        setting: ``ss`` or ``tt`` (see :func:`split_sequences`).
        fold: TT fold.
        resume: continue from ``out/checkpoint.pt`` if present (``config`` should start from
            the run's ``config.yaml``, see :func:`run_config`).
        cache_dir: where frozen features are cached (default ``out/cache``).
        progress: show progress bars.
        frame_cues: precomputed cues of the training frames (see :func:`build_training_set`).

    Returns:
        The summary also written to ``out/summary.json``.

    Started by ``torchrun --nproc-per-node N``, the N processes train together, each on its
    share of every global batch, with the results of single-process training (see
    :mod:`instrument_seg.training.distributed`); only rank 0 writes ``out``.
    """
    # ddp: under torchrun (WORLD_SIZE > 1) this process trains its share of each batch
    with session(resolve_device(config["train"]["device"])) as ddp:
        return _train(
            dataset, out, config, setting, fold, resume, cache_dir, progress, frame_cues, ddp
        )


def _train(
    dataset: Dataset,
    out: str | Path,
    config: dict[str, Any],
    setting: str,
    fold: int | None,
    resume: bool,
    cache_dir: Path | None,
    progress: bool,
    frame_cues: list[FrameCues] | None,
    ddp: Distributed,
) -> dict[str, Any]:
    from tqdm import tqdm

    out = Path(out)
    train_idx, test_idx = split_sequences(dataset, setting, fold, int(config["train"]["n_folds"]))
    previous = _prepare_out(out, resume)
    if previous is not None and previous["model_kwargs"] != model_kwargs(config):
        raise InputError(
            f"cannot resume {out}: its model {previous['model_kwargs']} differs from the "
            f"config's {model_kwargs(config)}"
        )
    seed = int(config["seed"])
    torch.manual_seed(seed)
    if int(config["train"]["threads"]) > 0:
        torch.set_num_threads(int(config["train"]["threads"]))
    device = ddp.device  # ddp: resolve_device(train.device), cuda:LOCAL_RANK under torchrun
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormals in the backward pass slow CPU steps ~3x
    loss_fn = build_loss(config)
    model = UNet(**model_kwargs(config))
    model.check_input(torch.zeros(1, 3, *working_size(config)))
    tc = config["train"]
    steps, batch = int(tc["steps"]), int(tc["batch_size"])
    if steps < 1 or batch < 1:
        raise InputError(f"train.steps and train.batch_size must be >= 1, got {steps}, {batch}")
    ddp.check_batch(batch)  # ddp: the global batch splits evenly over the processes
    features = None
    if loss_fn.needs_features:
        fc = config["features"]
        features = VGG16Features.from_source(fc["source"], fc["path"]).to(device)
    train_set = subset(dataset, train_idx)
    quiet = not (progress and ddp.is_main) or None  # ddp: bars on rank 0 only
    with tqdm(total=len(train_set), desc="cues+features", unit="frame", disable=quiet) as bar:
        data = ddp.main_first(  # ddp: rank 0 fills the cue/feature caches, then the others
            build_training_set,
            train_set,
            config,
            features,
            cache_dir or out / "cache",
            bar.update,
            frame_cues,
        )
    del features
    model.to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=float(tc["lr"]), weight_decay=float(tc["weight_decay"])
    )
    start_step = 0
    if previous is not None:
        model.load_state_dict(previous["model"])
        optimizer.load_state_dict(previous["optimizer"])
        start_step = int(previous["step"])
    net = ddp.wrap(model)  # ddp: SyncBatchNorm + DistributedDataParallel (else model itself)
    out.mkdir(parents=True, exist_ok=True)
    if ddp.is_main:  # ddp: run files from rank 0 only
        save_config(config, out / "config.yaml")
    log_path = ddp.run_file(out / "loss.csv")
    rows = []
    if start_step and log_path.is_file():
        with log_path.open() as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
    with log_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    split = {
        "setting": setting,
        "fold": fold,
        "train_sequences": [dataset.sequences[k].name for k in train_idx],
        "test_sequences": [dataset.sequences[k].name for k in test_idx],
    }

    def save(step: int) -> None:
        if not ddp.is_main:  # ddp
            return
        payload = checkpoint_payload(model, config, step=step, optimizer=optimizer, **split)
        save_checkpoint(payload, out / CHECKPOINT)

    a_pos = torch.from_numpy(data.a_pos).unsqueeze(1)
    a_neg = torch.from_numpy(data.a_neg).unsqueeze(1)
    model.train()
    first = last = None
    started = time.perf_counter()
    with (
        log_path.open("a", newline="") as f,
        tqdm(total=steps, initial=start_step, desc="train", unit="step", disable=quiet) as bar,
    ):
        writer = csv.DictWriter(f, LOG_FIELDS)
        for step in range(start_step, steps):
            t0 = time.perf_counter()
            pick = ddp.shard(data.pairs[_batch_order(len(data.pairs), batch, seed, step)])
            i, j = pick[:, 0], pick[:, 1]
            x = to_input(data.frames[np.concatenate([i, j])], device)
            z = net(x)
            z_t, z_t1 = z[: len(pick)], z[len(pick) :]
            feats_t = feats_t1 = None
            if data.feats is not None:
                feats_t, feats_t1 = data.feats[i].to(device), data.feats[j].to(device)
            loss, parts = loss_fn(
                z_t,
                z_t1,
                a_pos[i].to(device),
                a_neg[i].to(device),
                a_pos[j].to(device),
                a_neg[j].to(device),
                feats_t,
                feats_t1,
            )
            parts = ddp.mean_parts(parts)  # ddp: the global batch's losses, on every process
            if not np.isfinite(parts["total"]):
                raise InputError(f"training diverged at step {step + 1} (loss {parts['total']})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            row = {"step": step + 1, **{k: parts[k] for k in LOG_FIELDS[1:6]}}
            row["seconds"] = time.perf_counter() - t0
            writer.writerow(row)
            first = first if first is not None else parts["total"]
            last = parts["total"]
            bar.set_postfix(loss=f"{last:.4f}")
            bar.update()
            if (step + 1) % int(tc["checkpoint_every"]) == 0 and step + 1 < steps:
                f.flush()
                save(step + 1)
    save(steps)
    seconds = time.perf_counter() - started
    summary = {
        "run": str(out),
        "steps": steps,
        "resumed_from": start_step,
        "frames": len(data.frames),
        "pairs": int(len(data.pairs)),
        "first_loss": first,
        "final_loss": last,
        "train_seconds": seconds,
        "frames_per_second": 2 * batch * (steps - start_step) / max(seconds, 1e-9),
        "device": str(device),
        "processes": ddp.world_size,
        "setting": setting,
        "fold": fold,
        "train_sequences": split["train_sequences"],
        "test_sequences": split["test_sequences"],
    }
    if ddp.is_main:  # ddp
        write_json(out / "summary.json", summary)
    return summary
