"""Sequences of frames with optional ground truth, and the frame pairs training uses."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from instrument_seg.errors import InputError
from instrument_seg.imagemsg import safe_text


class Sequence(abc.ABC):
    """An ordered run of frames from one video (or one folder of stills).

    Subclasses read lazily; frames are uint8 RGB (H, W, 3), masks bool (H, W) or None.
    """

    name: str

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def frame_name(self, index: int) -> str:
        """A stable, file-system-safe name of frame ``index`` (e.g. ``frame000``)."""

    @abc.abstractmethod
    def image(self, index: int) -> np.ndarray:
        """Frame ``index`` as uint8 RGB (H, W, 3)."""

    @property
    @abc.abstractmethod
    def has_masks(self) -> bool:
        """Whether every frame has a ground-truth mask."""

    @abc.abstractmethod
    def mask(self, index: int) -> np.ndarray | None:
        """Ground truth of frame ``index`` as bool (H, W), or None without ground truth."""

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.image(i) for i in range(len(self)))


@dataclass(frozen=True)
class FrameRef:
    """One frame of a dataset: sequence index and frame index within it."""

    sequence: int
    index: int


@dataclass
class Dataset:
    """The sequences found under one data path."""

    root: str
    sequences: list[Sequence]
    layout: str

    def __len__(self) -> int:
        return sum(len(s) for s in self.sequences)

    @property
    def has_masks(self) -> bool:
        return all(s.has_masks for s in self.sequences)

    def frames(self) -> list[FrameRef]:
        """Every frame, sequence by sequence, in order."""
        return [FrameRef(s, i) for s, seq in enumerate(self.sequences) for i in range(len(seq))]

    def adjacent_pairs(
        self, rng: np.random.Generator | None = None, warn: Callable[[str], None] | None = None
    ) -> list[tuple[FrameRef, FrameRef]]:
        """Pairs (t, t+1) within each sequence; never across sequences.

        A sequence of one frame has no neighbour: its frame is paired with a random frame of
        another sequence instead (the paper's section 2.2: any similar pair works), and ``warn``
        is called once with a sentence naming the sequence.

        Raises:
            InputError: the set holds a single frame, so nothing can be paired.
        """
        frames = self.frames()
        if len(frames) < 2:
            raise InputError(f"{self.root} holds {len(frames)} frame(s); frame pairs need two")
        rng = rng if rng is not None else np.random.default_rng(0)
        pairs = []
        for s, seq in enumerate(self.sequences):
            if len(seq) < 2:
                others = [f for f in frames if f.sequence != s]
                partner = others[int(rng.integers(0, len(others)))]
                pairs.append((FrameRef(s, 0), partner))
                if warn is not None:
                    warn(
                        f"sequence {safe_text(seq.name)} in {self.root} has one frame; it is "
                        "paired with a random frame of another sequence"
                    )
                continue
            pairs += [(FrameRef(s, i), FrameRef(s, i + 1)) for i in range(len(seq) - 1)]
        return pairs

    def random_pairs(self, rng: np.random.Generator) -> list[tuple[FrameRef, FrameRef]]:
        """Each frame paired with a different random frame of the whole set (still images).

        Raises:
            InputError: the set holds fewer than two frames.
        """
        frames = self.frames()
        if len(frames) < 2:
            raise InputError(f"{self.root} holds {len(frames)} frame(s); frame pairs need two")
        partners = rng.integers(0, len(frames) - 1, size=len(frames))
        return [
            (f, frames[p + (p >= k)])
            for k, (f, p) in enumerate(zip(frames, partners, strict=True))
        ]
