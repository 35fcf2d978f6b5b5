"""Training: cues -> anchors -> U-Net with anchor + semantic-diffusion losses (Eq. 5).

A run directory holds ``config.yaml`` (the resolved config), ``checkpoint.pt`` (model, optimizer,
step and the preprocessing contract), ``loss.csv`` (one row per step) and ``summary.json``.

:func:`train` sets a run up once (:func:`_setup`: split, model, loss, training set, optimizer,
resumed state), then repeats :func:`_step` (one optimizer step) with logging and checkpoints
(:func:`_fit`). Under torchrun the processes train together; the lines marked ``ddp`` are where
:mod:`instrument_seg.training.distributed` takes part (each is a no-op in a single process).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from instrument_seg.config import load_config, save_config, working_size
from instrument_seg.cues.pipeline import FrameCues
from instrument_seg.data import Dataset
from instrument_seg.errors import InputError
from instrument_seg.fileio import write_json
from instrument_seg.model.checkpoint import (
    checkpoint_payload,
    load_checkpoint,
    model_kwargs,
    save_checkpoint,
)
from instrument_seg.model.contract import CHECKPOINT
from instrument_seg.model.network import build_model, normalization
from instrument_seg.training.augment import Augmentation, jitter, warp
from instrument_seg.training.distributed import Distributed, session
from instrument_seg.training.features import VGG16Features
from instrument_seg.training.losses import HINGE_STATS, AGSDLoss
from instrument_seg.training.rounds import (
    anchors_path,
    check_rounds,
    fuse,
    load_anchors,
    predict_frames,
    save_anchors,
)
from instrument_seg.training.splits import split_sequences, subset
from instrument_seg.training.trainset import TrainingSet, build_training_set, normalise

# The loss terms, then what the diffusion hinges see (empty when diffusion is off).
LOSS_FIELDS = ("total", "anc_t", "anc_t1", "fg", "bg", "crf")
LOG_FIELDS = ("step", *LOSS_FIELDS, *HINGE_STATS, "seconds")


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a device: ``auto`` is cuda when available, else cpu.

    Raises:
        InputError: An unknown name, or cuda without a CUDA device.
    """
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
        setting: ``ss`` or ``tt`` (see :func:`~instrument_seg.training.splits.split_sequences`).
        fold: TT fold.
        resume: continue from ``out/checkpoint.pt`` if present (``config`` should start from
            the run's ``config.yaml``, see :func:`run_config`).
        cache_dir: where frozen features are cached (default ``out/cache``).
        progress: show progress bars.
        frame_cues: precomputed cues of the training frames (see
            :func:`~instrument_seg.training.trainset.build_training_set`).

    Returns:
        The summary also written to ``out/summary.json``.

    Started by ``torchrun --nproc-per-node N``, the N processes train together, each on its
    share of every global batch, with the results of single-process training (see
    :mod:`instrument_seg.training.distributed`); only rank 0 writes ``out``.
    """
    # ddp: under torchrun (WORLD_SIZE > 1) this process trains its share of each batch
    with session(resolve_device(config["train"]["device"])) as ddp:
        run = _setup(
            dataset, Path(out), config, setting, fold, resume, cache_dir, progress, frame_cues, ddp
        )
        return _fit(run)


# --- setup -----------------------------------------------------------------------------------


@dataclass
class _Run:
    """A run set up by :func:`_setup`: everything :func:`_step` and :func:`_fit` use."""

    out: Path
    config: dict[str, Any]
    ddp: Distributed
    model: nn.Module  # the plain network (checkpoints, optimizer)
    net: nn.Module  # what the step calls: ``model``, or DDP around it under torchrun
    optimizer: torch.optim.Optimizer
    loss_fn: AGSDLoss
    data: TrainingSet
    a_pos: torch.Tensor  # float32 (N, 1, H, W), on the CPU
    a_neg: torch.Tensor  # float32 (N, 1, H, W), on the CPU
    steps: int  # over all rounds
    per_round: int  # steps of one self-training round (``steps`` when train.rounds is 1)
    fusion: str  # train.round_fusion
    batch: int  # global batch (pairs per step, over all processes)
    start_step: int  # 0, or the resumed checkpoint's step
    split: dict[str, Any]  # setting, fold, train_sequences, test_sequences
    quiet: bool | None  # tqdm's ``disable``
    norm: tuple[tuple[float, ...], tuple[float, ...]]  # the input's mean and std
    augment: Augmentation
    valid: torch.Tensor | None  # float32 (N, 1, H, W) field of view, on the CPU

    @property
    def device(self) -> torch.device:
        return self.ddp.device  # ddp: resolve_device(train.device), cuda:LOCAL_RANK under torchrun

    @property
    def seed(self) -> int:
        return int(self.config["seed"])


def _setup(
    dataset: Dataset,
    out: Path,
    config: dict[str, Any],
    setting: str,
    fold: int | None,
    resume: bool,
    cache_dir: Path | None,
    progress: bool,
    frame_cues: list[FrameCues] | None,
    ddp: Distributed,
) -> _Run:
    """Checks the arguments and builds the run, in an order that fixes the random numbers: the
    seed, then the U-Net's initial weights, then the training set."""
    tc = config["train"]
    train_idx, test_idx = split_sequences(dataset, setting, fold, int(tc["n_folds"]))
    previous = _previous_checkpoint(out, resume, config)
    _configure_torch(int(config["seed"]), int(tc["threads"]), ddp.device)
    loss_fn = AGSDLoss(**config["loss"])
    kwargs = model_kwargs(config)
    model = build_model(kwargs, pretrained=True, weights=config["model"]["encoder_weights"])
    model.check_input(torch.zeros(1, 3, *working_size(config)))
    augment = Augmentation.from_config(tc["augment"])
    steps, batch = int(tc["steps"]), int(tc["batch_size"])
    if steps < 1 or batch < 1:
        raise InputError(f"train.steps and train.batch_size must be >= 1, got {steps}, {batch}")
    ddp.check_batch(batch)  # ddp: the global batch splits evenly over the processes
    rounds, fusion = check_rounds(tc)
    quiet = not (progress and ddp.is_main) or None  # ddp: bars on rank 0 only
    cache_dir = cache_dir or out / "cache"
    data = _training_set(
        subset(dataset, train_idx), config, loss_fn, cache_dir, frame_cues, ddp, quiet
    )
    if tc["epochs"] is not None:  # epochs over all pairs instead of a step count
        steps = _steps_of_epochs(tc["epochs"], len(data.pairs), batch)
    model.to(ddp.device)
    optimizer = torch.optim.Adam(
        _param_groups(model, tc), lr=float(tc["lr"]), weight_decay=float(tc["weight_decay"])
    )
    start_step = 0
    if previous is not None:
        model.load_state_dict(previous["model"])
        optimizer.load_state_dict(previous["optimizer"])
        start_step = int(previous["step"])
    net = ddp.wrap(model)  # ddp: SyncBatchNorm + DistributedDataParallel (else model itself)
    split = {
        "setting": setting,
        "fold": fold,
        "train_sequences": [dataset.sequences[k].name for k in train_idx],
        "test_sequences": [dataset.sequences[k].name for k in test_idx],
    }
    return _Run(
        out=out,
        config=config,
        ddp=ddp,
        model=model,
        net=net,
        optimizer=optimizer,
        loss_fn=loss_fn,
        data=data,
        a_pos=_maps(data.a_pos),
        a_neg=_maps(data.a_neg),
        steps=steps * rounds,
        per_round=steps,
        fusion=fusion,
        batch=batch,
        start_step=start_step,
        split=split,
        quiet=quiet,
        norm=normalization(kwargs),
        augment=augment,
        valid=None if data.valid is None else _maps(data.valid),
    )


def _steps_of_epochs(epochs: Any, n_pairs: int, batch: int) -> int:
    """``train.epochs`` passes over every pair, as a number of steps of ``batch`` pairs."""
    if not isinstance(epochs, int | float) or epochs <= 0:
        raise InputError(f"train.epochs must be a positive number or null, got {epochs!r}")
    return max(1, int(round(float(epochs) * n_pairs / batch)))


def _param_groups(model: nn.Module, tc: dict[str, Any]) -> list[dict[str, Any]]:
    """One group, or two when ``train.encoder_lr`` gives the pretrained encoder its own rate."""
    encoder = getattr(model, "encoder", None)
    if tc["encoder_lr"] is None or encoder is None:
        return [{"params": list(model.parameters())}]
    mine = {id(p) for p in encoder.parameters()}
    rest = [p for p in model.parameters() if id(p) not in mine]
    return [
        {"params": list(encoder.parameters()), "lr": float(tc["encoder_lr"])},
        {"params": rest},
    ]


def _previous_checkpoint(out: Path, resume: bool, config: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint to resume from (None: start afresh); ``out`` must be empty otherwise."""
    ckpt = out / CHECKPOINT
    if not resume:
        if out.exists() and any(out.iterdir()):
            raise InputError(f"run directory {out} is not empty (pass --resume to continue it)")
        return None
    previous = load_checkpoint(ckpt) if ckpt.is_file() else None
    if previous is not None and previous["model_kwargs"] != model_kwargs(config):
        raise InputError(
            f"cannot resume {out}: its model {previous['model_kwargs']} differs from the "
            f"config's {model_kwargs(config)}"
        )
    return previous


def _configure_torch(seed: int, threads: int, device: torch.device) -> None:
    torch.manual_seed(seed)
    if threads > 0:
        torch.set_num_threads(threads)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormals in the backward pass slow CPU steps ~3x


def _training_set(
    train_set: Dataset,
    config: dict[str, Any],
    loss_fn: AGSDLoss,
    cache_dir: Path,
    frame_cues: list[FrameCues] | None,
    ddp: Distributed,
    quiet: bool | None,
) -> TrainingSet:
    """The training set, with frozen features when a diffusion term is on (the extractor is
    freed afterwards: features are computed once per frame)."""
    from tqdm import tqdm

    features = None
    if loss_fn.needs_features:
        fc = config["features"]
        features = VGG16Features.from_source(fc["source"], fc["path"]).to(ddp.device)
    with tqdm(total=len(train_set), desc="cues+features", unit="frame", disable=quiet) as bar:
        return ddp.main_first(  # ddp: rank 0 fills the cue/feature caches, then the others
            build_training_set, train_set, config, features, cache_dir, bar.update, frame_cues
        )


# --- one step --------------------------------------------------------------------------------


def _batch_order(n_pairs: int, batch: int, seed: int, step: int) -> np.ndarray:
    """Pair indices of ``step``: epochs are seeded permutations, so resuming is exact."""
    per_epoch = max(1, n_pairs // batch) if n_pairs >= batch else 1
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_pairs)
    if n_pairs < batch:
        return np.resize(order, batch)
    return order[k * batch : (k + 1) * batch]


def _step(run: _Run, step: int) -> dict[str, float]:
    """One optimizer step on the pairs of ``step``; returns the logged loss terms.

    Raises:
        InputError: The loss is not finite (training diverged).
    """
    data, device = run.data, run.device
    pick = data.pairs[_batch_order(len(data.pairs), run.batch, run.seed, step)]
    pick = run.ddp.shard(pick)  # ddp: this process's consecutive share of the global batch
    i, j = pick[:, 0], pick[:, 1]
    both = np.concatenate([i, j])  # frames t, then t+1
    maps = {"a_pos": run.a_pos[both].to(device), "a_neg": run.a_neg[both].to(device)}
    if run.valid is not None:
        maps["valid"] = run.valid[both].to(device)
    if data.feats is not None:
        maps["feats"] = data.feats[both].to(device)
    rgb = torch.from_numpy(np.ascontiguousarray(data.frames[both])).to(device)
    rgb = rgb.permute(0, 3, 1, 2).float() / 255.0
    if run.augment.enabled:  # one draw per pair, shared by its two frames
        params = _pair_params(run, step, len(pick))
        params = params + params
        rgb = jitter(rgb, params)
        maps["rgb"] = rgb  # the CRF term sees the frames the network sees
        maps = {
            k: warp(v, params, "nearest" if k == "valid" else "bilinear") for k, v in maps.items()
        }
        rgb = maps["rgb"]
    else:
        maps["rgb"] = rgb
    z = run.net(normalise(rgb, *run.norm))
    n = len(pick)
    first, second = ({k: v[:n] for k, v in maps.items()}, {k: v[n:] for k, v in maps.items()})
    loss, parts = run.loss_fn(
        z[:n],
        z[n:],
        first["a_pos"],
        first["a_neg"],
        second["a_pos"],
        second["a_neg"],
        first.get("feats"),
        second.get("feats"),
        first.get("valid"),
        second.get("valid"),
        first["rgb"],
        second["rgb"],
    )
    parts = run.ddp.mean_parts(parts)  # ddp: the global batch's losses, on every process
    if not np.isfinite(parts["total"]):
        raise InputError(f"training diverged at step {step + 1} (loss {parts['total']})")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()  # ddp: DDP averages the gradients over the processes here
    run.optimizer.step()
    return parts


def _pair_params(run: _Run, step: int, n: int) -> list[dict[str, float]]:
    """Augmentation of this process's ``n`` pairs of ``step``: drawn per position in the global
    batch from (seed, step, position), so resuming and DDP see the same draws."""
    positions = run.ddp.shard(np.arange(run.batch))  # ddp: this process's share
    return [
        run.augment.draw(np.random.default_rng([run.seed, step, int(k)]), 1)[0]
        for k in positions[:n]
    ]


# --- the loop: steps, logging, checkpoints ---------------------------------------------------


def _fit(run: _Run) -> dict[str, Any]:
    """Runs the steps from ``run.start_step`` to ``run.steps``, logging every step to
    ``loss.csv``, checkpointing every ``train.checkpoint_every`` steps and at the end."""
    from tqdm import tqdm

    log_path = _start_run_files(run)
    every = int(run.config["train"]["checkpoint_every"])
    run.model.train()
    first = last = None
    started = time.perf_counter()
    with (
        log_path.open("a", newline="") as f,
        tqdm(
            total=run.steps, initial=run.start_step, desc="train", unit="step", disable=run.quiet
        ) as bar,
    ):
        writer = csv.DictWriter(f, LOG_FIELDS)
        for step in range(run.start_step, run.steps):
            if step == run.start_step or step % run.per_round == 0:
                _round_anchors(run, step)
            t0 = time.perf_counter()
            parts = _step(run, step)
            writer.writerow(_log_row(step + 1, parts, time.perf_counter() - t0))
            first = first if first is not None else parts["total"]
            last = parts["total"]
            bar.set_postfix(loss=f"{last:.4f}")
            bar.update()
            if (step + 1) % every == 0 and step + 1 < run.steps:
                f.flush()
                _save(run, step + 1)
    _save(run, run.steps)
    summary = _summary(run, first, last, time.perf_counter() - started)
    if run.ddp.is_main:  # ddp
        write_json(run.out / "summary.json", summary)
    return summary


def _round_anchors(run: _Run, step: int) -> None:
    """Sets the anchors of the round that ``step`` is in: the cue anchors in round 1; at the
    first step of a later round, the cue anchors fused with the network's predictions (written
    to the run directory); when resuming inside a later round, the ones written then.

    Raises:
        InputError: A resumed run inside a later round whose anchors file is missing.
    """
    r = step // run.per_round + 1
    if r == 1:
        return
    data, path = run.data, anchors_path(run.out, r)
    if step == run.start_step and path.is_file():  # resumed: the anchors written back then
        a_pos, a_neg = load_anchors(path, data.a_pos.shape)
    elif step % run.per_round == 0:  # the round's first step: fuse the cues with predictions
        p = predict_frames(run.model, data.frames, run.norm, run.device, data.valid)
        a_pos, a_neg = fuse(data.a_pos, data.a_neg, p, run.fusion)
        if run.ddp.is_main:  # ddp: every process computes the same maps, rank 0 writes them
            save_anchors(path, a_pos, a_neg)
    else:
        raise InputError(f"cannot resume {run.out} inside round {r}: {path} is missing")
    run.a_pos, run.a_neg = _maps(a_pos), _maps(a_neg)


def _maps(a: np.ndarray) -> torch.Tensor:
    """float32 (N, H, W) maps as the (N, 1, H, W) tensor a step indexes, on the CPU."""
    return torch.from_numpy(a).unsqueeze(1)


def _start_run_files(run: _Run) -> Path:
    """Creates the run directory, writes ``config.yaml`` and starts ``loss.csv`` (keeping the
    rows up to the resumed step); returns the path to append loss rows to."""
    run.out.mkdir(parents=True, exist_ok=True)
    if run.ddp.is_main:  # ddp: run files from rank 0 only
        save_config(run.config, run.out / "config.yaml")
    log_path = run.ddp.run_file(run.out / "loss.csv")  # ddp: os.devnull on the other ranks
    rows = []
    if run.start_step and log_path.is_file():
        with log_path.open() as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= run.start_step]
    with log_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return log_path


def _log_row(step: int, parts: dict[str, float], seconds: float) -> dict[str, float]:
    """One ``loss.csv`` row: the 1-based step, the loss terms, the hinge diagnostics (empty
    without diffusion) and the step's duration."""
    row = {k: parts.get(k, "") for k in (*LOSS_FIELDS, *HINGE_STATS)}
    return {"step": step, **row, "seconds": seconds}


def _save(run: _Run, step: int) -> None:
    """Writes ``checkpoint.pt`` (model, optimizer, step, split) after ``step`` steps."""
    if not run.ddp.is_main:  # ddp: rank 0 writes
        return
    payload = checkpoint_payload(
        run.model, run.config, step=step, optimizer=run.optimizer, **run.split
    )
    save_checkpoint(payload, run.out / CHECKPOINT)


def _summary(run: _Run, first: float | None, last: float | None, seconds: float) -> dict[str, Any]:
    return {
        "run": str(run.out),
        "steps": run.steps,
        "rounds": run.steps // run.per_round,
        "resumed_from": run.start_step,
        "frames": len(run.data.frames),
        "pairs": int(len(run.data.pairs)),
        "first_loss": first,
        "final_loss": last,
        "train_seconds": seconds,
        "frames_per_second": 2 * run.batch * (run.steps - run.start_step) / max(seconds, 1e-9),
        "device": str(run.device),
        "processes": run.ddp.world_size,
        "setting": run.split["setting"],
        "fold": run.split["fold"],
        "train_sequences": run.split["train_sequences"],
        "test_sequences": run.split["test_sequences"],
    }
