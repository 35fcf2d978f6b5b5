"""Cue cache and cue workers: computed once, read back bit-identical, recomputed on change."""

from __future__ import annotations

import numpy as np
import pytest

from instrument_seg.config import load_config
from instrument_seg.cues import cache as cue_cache
from instrument_seg.cues import maps as cues
from instrument_seg.cues.cache import (
    AUTO_MIN_FRAMES,
    CueCache,
    cache_dir_setting,
    compute_cues,
    key_settings,
    pool_size,
    sequence_key,
    workers_setting,
)
from instrument_seg.errors import InputError

KWARGS = {
    "names": ("color", "objectness", "location"),
    "objectness_method": "saliency",  # fast; the cache does not care which method
    "color_scale": "fixed",
    "still_images": False,
    "still_sigma": 0.25,
    "seed": 0,
}


def frames(n: int, seed: int, h: int = 32, w: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture
def sequences() -> list[list[np.ndarray]]:
    return [frames(3, 0), frames(2, 1)]


class Counter:
    """Wraps the objectness function of ``cues`` and counts the frames it sees."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> None:
        self.calls = 0
        real = cues.objectness_map

        def counted(*args, **kwargs):
            self.calls += 1
            if fail:
                raise AssertionError("objectness computed although cached")
            return real(*args, **kwargs)

        monkeypatch.setattr(cues, "objectness_map", counted)


def assert_same(a: list[list[dict]], b: list[list[dict]]) -> None:
    assert [len(s) for s in a] == [len(s) for s in b]
    for sa, sb in zip(a, b, strict=True):
        for ma, mb in zip(sa, sb, strict=True):
            assert sorted(ma) == sorted(mb)
            for name in ma:
                assert ma[name].dtype == mb[name].dtype == np.float32
                assert np.array_equal(ma[name], mb[name]), name


class TestKey:
    def test_same_input_same_key(self, sequences):
        assert sequence_key(sequences[0], KWARGS) == sequence_key(
            [f.copy() for f in sequences[0]], dict(KWARGS)
        )

    def test_one_pixel_changes_the_key(self, sequences):
        changed = [f.copy() for f in sequences[0]]
        changed[2][5, 5, 0] ^= 1
        assert sequence_key(changed, KWARGS) != sequence_key(sequences[0], KWARGS)

    def test_order_and_count_change_the_key(self, sequences):
        seq = sequences[0]
        keys = {sequence_key(s, KWARGS) for s in (seq, seq[::-1], seq[:2], [*seq, seq[0]])}
        assert len(keys) == 4

    @pytest.mark.parametrize(
        "change",
        [
            {"objectness_method": "alexe"},
            {"names": ("color", "location")},
            {"seed": 1},
            {"color_scale": "frame"},
            {"still_images": True},
        ],
    )
    def test_settings_change_the_key(self, sequences, change):
        assert sequence_key(sequences[0], {**KWARGS, **change}) != sequence_key(
            sequences[0], KWARGS
        )

    def test_settings_without_effect_keep_the_key(self, sequences):
        key = sequence_key(sequences[0], KWARGS)
        assert sequence_key(sequences[0], {**KWARGS, "still_sigma": 0.5}) == key  # video
        reordered = {**KWARGS, "names": ("location", "color", "objectness")}
        assert sequence_key(sequences[0], reordered) == key
        no_obj = {**KWARGS, "names": ("color", "location")}
        assert sequence_key(sequences[0], {**no_obj, "objectness_method": "alexe"}) == (
            sequence_key(sequences[0], no_obj)
        )
        still = {**KWARGS, "still_images": True}
        assert sequence_key(sequences[0], {**still, "still_sigma": 0.5}) != sequence_key(
            sequences[0], still
        )
        assert key_settings(KWARGS)["names"] == ["color", "objectness", "location"]

    def test_code_version_is_part_of_the_key(self, sequences, monkeypatch):
        key = sequence_key(sequences[0], KWARGS)
        cue_cache.code_fingerprint.cache_clear()
        monkeypatch.setattr(cue_cache, "__version__", "999.0")
        try:
            assert sequence_key(sequences[0], KWARGS) != key
        finally:
            cue_cache.code_fingerprint.cache_clear()
        assert set(cue_cache.CODE_MODULES) >= {"maps", "objectness", "hed"}

    def test_unknown_cue_name(self, sequences):
        with pytest.raises(InputError, match="unknown cue 'shape'"):
            sequence_key(sequences[0], {**KWARGS, "names": ("shape",)})


class TestCache:
    def test_second_run_reads_back_without_computing(self, sequences, tmp_path, monkeypatch):
        reference = [cues.sequence_cues(f, **KWARGS) for f in sequences]
        counter = Counter(monkeypatch)
        ticks = []

        def tick() -> None:
            ticks.append(1)

        first = compute_cues(sequences, KWARGS, cache_dir=tmp_path, progress=tick)
        assert counter.calls == 5 and len(ticks) == 5
        assert len(list(tmp_path.glob("*/*.npz"))) == 2  # one file per sequence
        Counter(monkeypatch, fail=True)
        second = compute_cues(sequences, KWARGS, cache_dir=tmp_path, progress=tick)
        assert len(ticks) == 10
        assert_same(first, reference)
        assert_same(second, reference)
        assert all(m["location"] is s[0]["location"] for s in second for m in s)  # shared map

    def test_a_changed_frame_recomputes_its_sequence_only(self, sequences, tmp_path, monkeypatch):
        compute_cues(sequences, KWARGS, cache_dir=tmp_path)
        sequences[1][0] = 255 - sequences[1][0]
        counter = Counter(monkeypatch)
        result = compute_cues(sequences, KWARGS, cache_dir=tmp_path)
        assert counter.calls == 2
        assert_same(result, [cues.sequence_cues(f, **KWARGS) for f in sequences])

    def test_changed_settings_recompute(self, sequences, tmp_path, monkeypatch):
        compute_cues(sequences, KWARGS, cache_dir=tmp_path)
        counter = Counter(monkeypatch)
        compute_cues(sequences, {**KWARGS, "seed": 3}, cache_dir=tmp_path)
        assert counter.calls == 5
        subset = {**KWARGS, "names": ("objectness", "location")}
        result = compute_cues(sequences, subset, cache_dir=tmp_path)
        assert counter.calls == 10
        assert all(sorted(m) == ["location", "objectness"] for s in result for m in s)

    def test_corrupt_file_is_recomputed_and_rewritten(self, sequences, tmp_path, monkeypatch):
        first = compute_cues(sequences, KWARGS, cache_dir=tmp_path)
        path = CueCache(tmp_path).path(sequence_key(sequences[0], KWARGS))
        path.write_bytes(b"not an npz")
        counter = Counter(monkeypatch)
        assert_same(compute_cues(sequences, KWARGS, cache_dir=tmp_path), first)
        assert counter.calls == 3
        cache = CueCache(tmp_path)
        assert cache.load(sequence_key(sequences[0], KWARGS), KWARGS["names"], 3, (32, 40))
        assert cache.load(sequence_key(sequences[0], KWARGS), KWARGS["names"], 4, (32, 40)) is None
        assert (cache.hits, cache.misses) == (1, 1)

    def test_unusable_cache_directory(self, sequences, tmp_path):
        blocker = tmp_path / "file"
        blocker.write_text("x")
        with pytest.raises(InputError, match="cannot create the cue cache directory"):
            compute_cues(sequences, KWARGS, cache_dir=blocker / "cues")


class TestWorkers:
    def test_pool_matches_in_process(self, sequences, monkeypatch):
        monkeypatch.setattr(cue_cache, "MAX_CHUNK", 2)  # chunks split a sequence
        subset = {**KWARGS, "names": ("objectness", "location")}  # colour used, then dropped
        ticks = []
        pooled = compute_cues(sequences, subset, workers=2, progress=lambda: ticks.append(1))
        assert len(ticks) == 5
        assert_same(pooled, compute_cues(sequences, subset, workers=1))

    def test_finishing_stills_matches_sequence_cues(self, sequences):
        still = {**KWARGS, "still_images": True, "still_sigma": 0.3}
        maps = cue_cache._per_frame_cues(sequences[0], still)
        cue_cache._finish_sequence(maps, (32, 40), still)
        assert_same([maps], [cues.sequence_cues(sequences[0], **still)])

    def test_pool_size(self, monkeypatch):
        assert pool_size(1, 10_000) == 1
        assert pool_size(4, 3) == 3
        assert pool_size(0, AUTO_MIN_FRAMES - 1) == 1
        monkeypatch.setattr(cue_cache.os, "sched_getaffinity", lambda _pid: set(range(8)), False)
        monkeypatch.setattr(cue_cache.os, "getloadavg", lambda: (2.5, 0.0, 0.0))
        assert cue_cache.idle_cores() == 5
        assert pool_size(0, 10_000) == 5
        assert pool_size(0, AUTO_MIN_FRAMES) == min(5, AUTO_MIN_FRAMES // 64)
        monkeypatch.setattr(cue_cache.os, "getloadavg", lambda: (9.0, 0.0, 0.0))
        assert pool_size(0, 10_000) == 1  # a busy machine: a pool would be slower

    def test_bad_workers(self, sequences):
        with pytest.raises(InputError, match="cues.workers must be an integer >= 0"):
            compute_cues(sequences, KWARGS, workers=-1)


class TestConfig:
    def test_settings(self, tmp_path, monkeypatch):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        config = load_config()
        assert workers_setting(config) == 0
        assert cache_dir_setting(config) == tmp_path / "instrument_seg" / "cues"
        off = load_config([], ["cues.cache_dir=null", "cues.workers=2"])
        assert cache_dir_setting(off) is None and workers_setting(off) == 2
        monkeypatch.setenv("RUNS", str(tmp_path))
        given = load_config([], ["cues.cache_dir=$RUNS/cues"])
        assert cache_dir_setting(given) == tmp_path / "cues"

    def test_auto_cache_that_cannot_be_created_is_no_cache(self, tmp_path, monkeypatch):
        (tmp_path / "file").write_text("x")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
        with pytest.warns(UserWarning, match="no cue cache"):
            assert cache_dir_setting(load_config()) is None

    @pytest.mark.parametrize("override", ["cues.workers=-2", "cues.workers=x", "cues.cache_dir=5"])
    def test_bad_settings(self, override):
        config = load_config([], [override])
        with pytest.raises(InputError, match=override.split("=")[0]):
            workers_setting(config)
            cache_dir_setting(config)

    def test_retraining_skips_cue_computation(self, tmp_path, monkeypatch):
        """``train`` twice on the same frames: the second run computes no objectness."""
        from instrument_seg.data import load_dataset
        from instrument_seg.data.synthetic import write_dataset
        from instrument_seg.training.loop import train

        data = load_dataset(write_dataset(tmp_path / "data", 2, 3, (64, 80), 0))
        overrides = [
            "data.size=[64,80]",
            "model.encoder=unet",
            "model.width=4",
            "model.depth=2",
            "train.steps=1",
            "loss.use_fg=false",
            "loss.use_bg=false",
            "cues.objectness.method=saliency",
            f"cues.cache_dir={tmp_path / 'cues'}",
        ]
        counter = Counter(monkeypatch)
        first = train(data, tmp_path / "a", load_config([], overrides), progress=False)
        assert counter.calls == 6
        Counter(monkeypatch, fail=True)
        second = train(data, tmp_path / "b", load_config([], overrides), progress=False)
        assert second["first_loss"] == first["first_loss"]
        assert (tmp_path / "a" / "loss.csv").read_text().split("\n")[1].split(",")[:6] == (
            (tmp_path / "b" / "loss.csv").read_text().split("\n")[1].split(",")[:6]
        )
