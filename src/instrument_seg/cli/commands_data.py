"""``synth`` and ``bag``: datasets written (procedural frames) or converted (rosbag2 <-> folders).

Each command has a ``check_*`` function, run by ``main`` before the command itself, that
validates every path of the command line (see :mod:`instrument_seg.cli.paths`).
"""

from __future__ import annotations

import argparse

from instrument_seg.cli.common import progress_bar
from instrument_seg.cli.paths import input_path, output_dir

# --- synth -----------------------------------------------------------------------------------


def check_synth(args: argparse.Namespace) -> None:
    """``--out``: a folder that does not exist yet (or is empty)."""
    output_dir(args.out, "output directory", empty=True)


def cmd_synth(args: argparse.Namespace) -> str:
    """Writes the procedural dataset; returns the summary line."""
    from instrument_seg.data.synthetic import write_dataset

    out = write_dataset(args.out, args.sequences, args.frames, args.size, args.seed, progress=True)
    return (
        f"synth: wrote {args.sequences} sequence(s) x {args.frames} frame(s) at "
        f"{args.size[0]}x{args.size[1]} with masks to {out}"
    )


# --- bag -------------------------------------------------------------------------------------


def check_bag(args: argparse.Namespace) -> None:
    """``--extract BAG --out DIR``: an existing bag, DIR absent or empty in an existing folder;
    ``--data DIR --out BAG``: an existing dataset, BAG absent in an existing folder."""
    if args.extract is not None:
        input_path(args.extract, "bag")
        output_dir(args.out, "output directory", empty=True, parent_must_exist=True)
    else:
        input_path(args.data, "data path")
        output_dir(args.out, "output bag", absent=True, parent_must_exist=True)


def cmd_bag(args: argparse.Namespace) -> str:
    """Writes a dataset as a bag, or ``--extract``s a bag to folders; returns the summary."""
    from instrument_seg.data import bags
    from instrument_seg.imagemsg import safe_name

    if args.extract is not None:
        dataset = bags.bag_dataset(args.extract, args.image_topic, args.gt_topic)
        index = dataset.sequences[0].index  # the bag's topics, checked before writing
        with progress_bar(len(dataset), "extract") as bar:
            dataset, out = bags.extract_bag(dataset, args.out, progress=bar.update)
        index.close()
        gt = (
            f"with ground truth from {safe_name(index.gt_topic)}"
            if dataset.has_masks
            else "no masks"
        )
        return (
            f"bag: extracted {len(dataset)} frame(s) in {len(dataset.sequences)} sequence(s) "
            f"from {safe_name(index.image_topic)} ({gt}) of {args.extract} to {out}"
        )
    from instrument_seg.data import load_dataset

    dataset = load_dataset(args.data)
    with progress_bar(len(dataset), "bag") as bar:
        r = bags.write_bag(
            dataset,
            args.out,
            storage=args.storage,
            rate=args.rate,
            image_topic=args.image_topic or bags.DEFAULT_IMAGE_TOPIC,
            gt_topic=args.gt_topic or bags.DEFAULT_GT_TOPIC,
            frame_id=args.frame_id,
            progress=bar.update,
            compressed=args.compressed or "",
        )
    sizes = ", ".join(f"{h}x{w}" for h, w in r.sizes)
    gt = f"masks on {r.gt_topic}" if r.with_gt else "no ground truth"
    return (
        f"bag: wrote {r.frames} frame(s) ({r.sequences} sequence(s), {sizes}) on "
        f"{r.image_topic} with {gt} at {r.rate:g} Hz to {r.path} ({r.storage})"
    )
