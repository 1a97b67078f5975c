"""Command line: ``python -m core presets | summary NAME_OR_JSON | script NAME_OR_JSON``.

``pretrain NAME|all`` (re)trains the shipped weights in cached_models/.
``train PRESET [--images N] [--epochs E] [--seed S]`` trains a preset with the app's own
engine and prints the test accuracy as its last line, ``test_accuracy=0.9912``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import LayerLabError
from core.presets import PRESETS, get_preset
from core.spec import ModelSpec
from core.stats import human_bytes, human_count, shape_text, summarize


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] +
                     [line(r) for r in rows])


def load_spec(name_or_path: str) -> ModelSpec:
    """A preset by name, or a spec from a JSON file."""
    if name_or_path in PRESETS:
        return get_preset(name_or_path).spec
    path = Path(name_or_path)
    if not path.is_file():
        raise LayerLabError(f"{name_or_path!r} is neither a preset ({', '.join(PRESETS)}) "
                            f"nor a JSON spec file.")
    return ModelSpec.from_json(path.read_bytes())


def cmd_presets(_: argparse.Namespace) -> str:
    rows = []
    for name, preset in PRESETS.items():
        _, t = summarize(preset.spec)
        rows.append([name, f"{t.params:,}", f"{t.trainable:,}", f"{t.non_trainable:,}",
                     human_bytes(t.weight_bytes["fp32"]), human_count(t.macs)])
    return _table(["preset", "params", "trainable", "non-trainable", "fp32 size", "MACs"],
                  rows)


def cmd_summary(args: argparse.Namespace) -> str:
    spec = load_spec(args.spec)
    layer_rows, t = summarize(spec, batch_size=args.batch)
    rows = [[str(r.index), f"{r.name} ({r.layer})", shape_text(r.output_shape),
             f"{r.params:,}", f"{r.macs:,}", f"{r.activations:,}"] for r in layer_rows]
    table = _table(["#", "layer", "output", "params", "MACs", "activations"], rows, left=2)
    return (f"{spec.name}\n{table}\n\n"
            f"total params {t.params:,} (trainable {t.trainable:,}, non-trainable "
            f"{t.non_trainable:,})\n"
            f"weights: fp32 {human_bytes(t.weight_bytes['fp32'])}, fp16 "
            f"{human_bytes(t.weight_bytes['fp16'])}, int8 {human_bytes(t.weight_bytes['int8'])}\n"
            f"Adam training state: {human_bytes(t.adam_training_bytes)}\n"
            f"activations at batch {t.batch_size}: inference "
            f"{human_bytes(t.activation_bytes_inference)}, training "
            f"{human_bytes(t.activation_bytes_training)}\n"
            f"MACs per image: {t.macs:,}")


def cmd_script(args: argparse.Namespace) -> str:
    from core.export import to_keras_script  # noqa: PLC0415

    return to_keras_script(load_spec(args.spec))


def cmd_pretrain(args: argparse.Namespace) -> str:
    from core.pretrained import pretrain  # noqa: PLC0415

    names = list(PRESETS) if args.name == "all" else [args.name]
    lines = []
    for name in names:
        get_preset(name)
        result = pretrain(name, out_dir=Path(args.out), log=print)
        lines.append(f"{name}: test accuracy {result['test_accuracy']:.4f}, "
                     f"{result['wall_time_s']:.1f} s on {result['device']}")
    return "\n".join(lines)


def _train_recipe(args: argparse.Namespace):
    """The preset's recipe with the command line's changes (checked)."""
    changes = {key: value for key, value in (("train_subset", args.images),
                                             ("epochs", args.epochs), ("seed", args.seed))
               if value is not None}
    return get_preset(args.preset).recipe.replace(**changes)


def _follow(job) -> dict:
    """Print one line per epoch until the run is done (Ctrl-C stops it); the done event."""
    import time  # noqa: PLC0415

    job.start()
    while True:
        try:
            for event in job.drain():
                if event["kind"] == "epoch":
                    val = event.get("val_accuracy")
                    print(f"epoch {event['epoch']}: loss {event['loss']:.4f}, accuracy "
                          f"{event['accuracy']:.4f}"
                          + (f", validation {val:.4f}" if val is not None else "")
                          + f" ({event['seconds']:.1f} s)", flush=True)
                elif event["kind"] == "warning":
                    print(f"warning: {event['message']}", file=sys.stderr)
                elif event["kind"] == "done":
                    return event
            time.sleep(0.1)
        except KeyboardInterrupt:
            print("stopping after the current batch…", file=sys.stderr)
            job.stop()


def cmd_train(args: argparse.Namespace) -> str:
    from core.calibration import short_recipe_warning  # noqa: PLC0415
    from core.training import TrainingJob  # noqa: PLC0415

    recipe = _train_recipe(args)
    warning = short_recipe_warning(recipe)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"training {args.preset}: {recipe.train_subset or 60_000:,} images, "
          f"{recipe.epochs} epoch(s), batch {recipe.batch_size}, seed {recipe.seed}",
          flush=True)
    done = _follow(TrainingJob(get_preset(args.preset).spec, recipe))
    if done["status"] == "failed":
        raise LayerLabError(done["message"])
    return f"{done['message']}\ntest_accuracy={done['run'].test_accuracy:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("presets", help="table of the preset networks").set_defaults(fn=cmd_presets)
    p = sub.add_parser("summary", help="per-layer table of a preset or JSON spec")
    p.add_argument("spec")
    p.add_argument("--batch", type=int, default=32, help="batch size for activation memory")
    p.set_defaults(fn=cmd_summary)
    p = sub.add_parser("script", help="print a standalone Keras script for a spec")
    p.add_argument("spec")
    p.set_defaults(fn=cmd_script)
    p = sub.add_parser("pretrain", help="train a preset on full MNIST into cached_models/")
    p.add_argument("name", help="preset name or 'all'")
    p.add_argument("--out", default="cached_models")
    p.set_defaults(fn=cmd_pretrain)
    p = sub.add_parser("train", help="train a preset with its recipe; prints test_accuracy=…")
    p.add_argument("preset", choices=[n for n in PRESETS])
    p.add_argument("--images", type=int, help="training images (default: all 60,000)")
    p.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    p.add_argument("--seed", type=int, help="random seed (default: the preset's)")
    p.set_defaults(fn=cmd_train)
    args = parser.parse_args(argv)
    try:
        print(args.fn(args))
    except LayerLabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
