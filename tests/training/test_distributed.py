"""Distributed training: torchrun with gloo on the CPU matches single-process training.

Three levels: the launch bookkeeping without processes; two spawned gloo processes checking the
synchronised BatchNorm and DDP gradients of a U-Net against one process on the whole batch; and
the real command (``torchrun --nproc-per-node 2 -m instrument_seg train``) against
``instrument-seg train`` on generated frames, plus errors found by one process only.

Tolerances (measured, see docs/deployment.md): per-step losses agree to ~6e-7; weights after 4
Adam steps agree to 1e-6 for ~85% of the values, 1e-5 for >99%, with a few values up to ~2e-4
(Adam's first steps move every weight by about lr = 1e-4 whatever the gradient's size, so a
gradient that is zero up to rounding gets either sign). Single-process training on 1 thread vs
2 threads differs by the same amounts, i.e. this is the rounding floor, not DDP.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from instrument_seg.errors import InputError
from instrument_seg.training.distributed import (
    Distributed,
    PeerError,
    SyncBatchNorm2d,
    convert_sync_batchnorm,
    from_env,
)

TINY = [
    "data.size=[64,80]",
    "features.size=[64,80]",
    "model.encoder=unet",
    "model.width=4",
    "model.depth=2",
    "loss.use_fg=true",  # diffusion on: its pools under DDP are checked too
    "loss.use_bg=true",
    "train.steps=4",
    "train.batch_size=4",
    "train.lr=0.0001",  # the tolerances below are for this lr, whatever the default
    "train.threads=1",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TIMEOUT = 240
LOSS_ATOL = 1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    if exe.is_file():
        return [str(exe)]
    return [sys.executable, "-m", "torch.distributed.run"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from instrument_seg.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("ddp") / "data", 2, 4, (64, 80), 0)


@pytest.fixture(scope="module")
def cue_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cue_cache")


# --- the launch, without processes -----------------------------------------------------------


class TestLaunch:
    def test_not_launched_is_one_process(self):
        ctx = from_env({})
        assert (ctx.world_size, ctx.rank, ctx.enabled, ctx.is_main) == (1, 0, False, True)
        rows = np.arange(8).reshape(4, 2)
        assert ctx.shard(rows) is rows
        ctx.check_batch(3)
        assert ctx.run_file(Path("run/loss.csv")) == Path("run/loss.csv")
        assert ctx.mean_parts({"total": 2.0}) == {"total": 2.0}
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        assert ctx.wrap(model) is model and type(model[1]) is nn.BatchNorm2d

    def test_torchrun_variables(self):
        ctx = from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
        assert (ctx.world_size, ctx.rank, ctx.local_rank, ctx.enabled) == (4, 3, 1, True)
        assert not ctx.is_main and ctx.run_file(Path("run/x")) == Path(os.devnull)

    @pytest.mark.parametrize(
        "env, words",
        [
            ({"WORLD_SIZE": "two"}, ["WORLD_SIZE", "two"]),
            ({"WORLD_SIZE": "2", "RANK": "2"}, ["RANK=2", "WORLD_SIZE=2"]),
        ],
    )
    def test_bad_variables(self, env, words):
        with pytest.raises(InputError) as err:
            from_env(env)
        assert all(w in str(err.value) for w in words)

    def test_world_without_torchrun_rendezvous(self, monkeypatch):
        from instrument_seg.training.distributed import session

        monkeypatch.delenv("MASTER_ADDR", raising=False)
        monkeypatch.delenv("MASTER_PORT", raising=False)
        with pytest.raises(InputError, match="MASTER_ADDR and MASTER_PORT not set: start"):
            with session(torch.device("cpu"), {"WORLD_SIZE": "2", "RANK": "0"}):
                pass
        with session(torch.device("cpu"), {}) as ctx:  # not launched: nothing opened
            assert not ctx.enabled and ctx.backend is None

    def test_each_rank_takes_its_consecutive_share(self):
        rows = np.arange(12).reshape(6, 2)
        shares = [Distributed(world_size=3, rank=r).shard(rows) for r in range(3)]
        assert np.array_equal(np.concatenate(shares), rows)
        assert [s.tolist() for s in shares[:1]] == [[[0, 1], [2, 3]]]

    def test_batch_must_split_evenly(self):
        ctx = Distributed(world_size=2, rank=0)
        ctx.check_batch(4)
        with pytest.raises(InputError, match="train.batch_size 3 does not split over the 2"):
            ctx.check_batch(3)

    def test_conversion_shares_parameters_and_keys(self):
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.BatchNorm2d(4)))
        before = model.state_dict()
        params = list(model.parameters())
        convert_sync_batchnorm(model)
        assert type(model[1][0]) is SyncBatchNorm2d
        assert list(model.parameters()) == params  # same tensors: optimizers stay valid
        assert list(model.state_dict()) == list(before)
        with pytest.raises(TypeError):
            convert_sync_batchnorm(nn.BatchNorm2d(3))

    def test_sync_layer_is_plain_batchnorm_without_a_process_group(self):
        torch.manual_seed(0)
        plain, sync = nn.BatchNorm2d(3), SyncBatchNorm2d(3)
        x = torch.randn(4, 3, 5, 5)
        assert torch.equal(plain(x), sync(x))
        assert torch.equal(plain.running_var, sync.running_var)


# --- two gloo processes: SyncBatchNorm and DDP gradients -------------------------------------


def _unet():
    from instrument_seg.model.unet import UNet

    torch.manual_seed(0)
    return UNet(width=4, depth=2)


def _batch() -> torch.Tensor:
    return torch.randn(8, 3, 32, 40, generator=torch.Generator().manual_seed(1))


def _objective(z: torch.Tensor) -> torch.Tensor:
    """A per-sample mean, like every term of the training loss."""
    return torch.sigmoid(z).square().mean() + z.mean()


def _gloo_worker(rank: int, world: int, port: int, queue) -> None:
    """One process of a 2-process gloo launch, opened by distributed.session as torchrun would."""
    from instrument_seg.training.distributed import session

    torch.set_num_threads(1)
    env = {"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank)}
    os.environ.update(env, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        with session(torch.device("cpu"), env) as ddp:
            model = _unet()
            net = ddp.wrap(model)
            x = ddp.shard(_batch())
            z = net(x)
            _objective(z).backward()
            parts = ddp.mean_parts({"rank": float(rank)})
            # numpy, not tensors: a queued tensor is shared memory that dies with this process
            grads = {k: p.grad.numpy().copy() for k, p in model.named_parameters()}
            state = {k: v.float().numpy().copy() for k, v in model.state_dict().items()}
            result = (rank, z.detach().numpy().copy(), grads, state, parts, ddp.backend)
            try:
                ddp.agree(InputError("bad frame on rank 1") if rank == 1 else None)
                agreed = None
            except InputError as exc:
                agreed = (type(exc).__name__, str(exc))
            queue.put((*result, agreed))
    except BaseException as exc:  # report instead of leaving the parent waiting
        queue.put((rank, repr(exc)))
        raise


@pytest.fixture(scope="module")
def gloo_results() -> dict[int, tuple]:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_gloo_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(len(r) > 2 for r in results), results
    return {r[0]: r[1:] for r in results}


class TestGlooProcesses:
    def test_outputs_gradients_and_batchnorm_match_one_process(self, gloo_results):
        torch.set_num_threads(1)
        model = _unet()
        z = model(_batch())
        _objective(z).backward()
        for rank, (z_rank, grads, state, _parts, backend, _agreed) in gloo_results.items():
            assert backend == "gloo"
            np.testing.assert_allclose(z_rank, z.detach()[4 * rank : 4 * rank + 4], atol=1e-5)
            for name, p in model.named_parameters():
                scale = float(p.grad.abs().max())
                np.testing.assert_allclose(grads[name], p.grad, atol=1e-5 * scale, err_msg=name)
            for name, ref in model.state_dict().items():  # running statistics of the whole batch
                np.testing.assert_allclose(state[name], ref.float(), atol=1e-6)

    def test_logged_values_are_averaged(self, gloo_results):
        assert {r[3]["rank"] for r in gloo_results.values()} == {0.5}

    def test_a_failure_on_one_process_stops_both(self, gloo_results):
        assert gloo_results[1][5] == ("InputError", "bad frame on rank 1")
        assert gloo_results[0][5] == ("PeerError", "process 1 of 2 stopped: bad frame on rank 1")
        assert issubclass(PeerError, InputError)


# --- the real command ------------------------------------------------------------------------


def _train_single(data: Path, out: Path, cue_dir: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "instrument_seg", "train", "--data", str(data), "--out", str(out)]
    return subprocess.run(
        [*cmd, *TINY, f"cues.cache_dir={cue_dir}"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=ENV,
    )


def _losses(run: Path) -> np.ndarray:
    with (run / "loss.csv").open() as f:
        rows = list(csv.DictReader(f))
    keys = ("total", "anc_t", "anc_t1", "fg", "bg")
    return np.array([[float(r[k]) for k in keys] for r in rows])


@pytest.fixture(scope="module")
def runs(data, cue_dir, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("runs")
    single = _train_single(data, base / "single", cue_dir)
    assert single.returncode == 0, single.stderr
    args = ["train", "--data", str(data), "--out", str(base / "ddp")]
    ddp = _torchrun([*args, *TINY, f"cues.cache_dir={cue_dir}"])
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    return base / "single", base / "ddp", ddp


def _torchrun(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [*torchrun(), "--standalone", "--nproc-per-node", "2", "-m", "instrument_seg"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=TIMEOUT, env=ENV)


class TestTorchrun:
    def test_rank_zero_alone_prints_and_writes(self, runs):
        _, ddp, proc = runs
        summaries = [line for line in proc.stdout.splitlines() if line.startswith("train: ")]
        assert len(summaries) == 1 and summaries[0].startswith("train: 4 steps on 8 frames")
        assert "error" not in proc.stderr.lower()
        summary = json.loads((ddp / "summary.json").read_text())
        assert summary["processes"] == 2 and summary["steps"] == 4
        assert [int(r["step"]) for r in csv.DictReader((ddp / "loss.csv").open())] == [1, 2, 3, 4]

    def test_losses_match_single_process(self, runs):
        single, ddp, _ = runs
        a, b = _losses(single), _losses(ddp)
        assert a.shape == b.shape == (4, 5)
        np.testing.assert_allclose(b, a, atol=LOSS_ATOL, rtol=0)

    def test_weights_match_single_process(self, runs):
        from instrument_seg.model.checkpoint import load_checkpoint, model_from_checkpoint

        single, ddp = (load_checkpoint(r) for r in runs[:2])
        assert single["step"] == ddp["step"] == 4
        model_from_checkpoint(ddp)  # a plain UNet loads it: no DDP/SyncBatchNorm leftovers
        assert list(single["model"]) == list(ddp["model"])
        diff = torch.cat(
            [
                (single["model"][k].double() - ddp["model"][k].double()).abs().flatten()
                for k in single["model"]
                if single["model"][k].is_floating_point()
            ]
        )
        lr, steps = 1e-4, 4
        assert float(diff.max()) <= 2 * lr * steps  # Adam's bound for a flipped sign
        # The floor is rounding: the same single-process run with 1 vs 2 threads agrees on
        # 98.91 % of the values within 1e-5 and 72.6 % within 1e-6 (this DDP run: 98.95 %,
        # 72.6 %), measured after the diffusion pooling moved to bilinear features.
        assert float((diff <= 1e-5).double().mean()) >= 0.98
        assert float((diff <= 1e-6).double().mean()) >= 0.7
        state = ddp["optimizer"]["state"]
        assert all(float(s["step"]) == 4 for s in state.values())

    def test_resumed_run_matches_an_uninterrupted_one(self, runs, data, cue_dir, tmp_path):
        out = ["train", "--data", str(data), "--out", str(tmp_path / "resumed")]
        settings = [*TINY, f"cues.cache_dir={cue_dir}"]
        first = _torchrun([*out, *settings, "train.steps=2"])
        assert first.returncode == 0, first.stderr
        second = _torchrun([*out, "--resume", *settings, "train.steps=4"])
        assert second.returncode == 0, second.stderr
        assert json.loads((tmp_path / "resumed" / "summary.json").read_text())["resumed_from"] == 2
        np.testing.assert_allclose(
            _losses(tmp_path / "resumed"), _losses(runs[0]), atol=LOSS_ATOL, rtol=0
        )


class TestAgreedErrors:
    """Two processes started by hand with torchrun's variables, so each one's output is seen."""

    def _launch(self, data_of_rank: list[Path], out: Path, cue_dir: Path) -> list:
        port = free_port()
        procs = []
        for rank, data in enumerate(data_of_rank):
            env = {**ENV, "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank)}
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_WORLD_SIZE="2")
            cmd = [sys.executable, "-m", "instrument_seg", "train", "--data", str(data)]
            procs.append(
                subprocess.Popen(
                    [*cmd, "--out", str(out), *TINY, f"cues.cache_dir={cue_dir}"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
        results = []
        try:
            for p in procs:
                stdout, stderr = p.communicate(timeout=TIMEOUT)
                results.append((p.returncode, stdout, stderr))
        finally:
            for p in procs:
                p.kill()
        return results

    @pytest.mark.parametrize("bad_rank", [0, 1])
    def test_a_bad_frame_on_one_process_stops_both_with_one_sentence(
        self, data, cue_dir, tmp_path, bad_rank
    ):
        bad = tmp_path / "bad"
        shutil.copytree(data, bad)
        (bad / "seq_01" / "images" / "frame_0002.png").write_bytes(b"garbage")
        inputs = [data, data]
        inputs[bad_rank] = bad
        (rc0, out0, err0), (rc1, out1, err1) = self._launch(inputs, tmp_path / "run", cue_dir)
        assert (rc0, rc1) == (2, 2), err0 + err1
        assert "Traceback" not in err0 + err1
        errors = [line for line in err0.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "frame_0002.png" in errors[0], err0
        if bad_rank == 1:
            assert errors[0].startswith("error: process 1 of 2 stopped: ")
        assert "error: " not in err1 and not out0.strip() and not out1.strip()

    def test_other_commands_refuse_to_run_under_torchrun(self, data):
        env = {**ENV, "WORLD_SIZE": "2", "RANK": "0"}
        proc = subprocess.run(
            [sys.executable, "-m", "instrument_seg", "cues", "--data", str(data)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
        )
        assert proc.returncode == 2
        assert proc.stderr.strip() == "error: only train runs under torchrun, not cues"
