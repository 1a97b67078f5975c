"""Command line: ``python -m core presets | summary NAME_OR_JSON | script NAME_OR_JSON``.

``pretrain NAME|all`` (re)trains the shipped weights in cached_models/.
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
    args = parser.parse_args(argv)
    try:
        print(args.fn(args))
    except LayerLabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
