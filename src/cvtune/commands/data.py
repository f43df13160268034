"""`cvtune data info|synth-text`: inspect a dataset folder; generate a labelled synthetic text set."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..console import console, progress
from ._options import FORCE, JSON, LIMIT, print_json


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Datasets: inspect a folder's layout, generate a labelled synthetic text set.",
                        no_args_is_help=True)

    @group.command("info")
    def info(
        path: Path = typer.Argument(..., help="Dataset folder or labels/annotation file."),
        kind: str = typer.Option(None, "--kind", help="Layout: images, classification, coco, icdar, ocr_lines "
                                                      "(default: detected)."),
        check: bool = typer.Option(False, "--check", help="Decode every image and report unreadable ones."),
        limit: int = LIMIT,
        as_json: bool = JSON,
    ) -> None:
        """Show which layout a dataset has, how many samples and classes, and (with --check) unreadable files."""
        import warnings

        from ..data.loaders import iter_images, load_dataset

        dataset = load_dataset(path, kind)
        row = {"path": str(path), "kind": dataset.kind, "root": str(dataset.root), "samples": len(dataset),
               "classes": dataset.classes}
        if dataset.kind == "icdar":
            boxes = [b for s in dataset.samples for b in s.target]
            row["boxes"] = len(boxes)
            row["dont_care"] = sum(b.ignore for b in boxes)
        if check:
            checked = dataset.limit(limit)  # --limit: decode only the first N images
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row["readable"] = sum(1 for _ in iter_images(checked))
            if limit is not None:
                row["checked"] = len(checked)  # a limited dataset shares the loader's record of skipped files
            row["skipped"] = [[str(p), why] for p, why in dataset.skipped]
        if as_json:
            print_json("dataset", row)
            return
        table = Table(title=f"dataset {path}", show_header=False)
        for key, value in row.items():
            if key == "classes":
                value = ", ".join(value[:20]) + (" ..." if len(value) > 20 else "") if value else "-"
            if key == "skipped":
                value = "\n".join(f"{p}: {why}" for p, why in value) or "none"
            table.add_row(key, str(value))
        console.print(table)

    @group.command("synth-text")
    def synth_text(
        out: Path = typer.Option(..., "-o", "--out", help="Output folder (new, empty, or a previous synth output)."),
        n: int = typer.Option(200, "--n", min=1, help="Number of images."),
        seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same images."),
        fonts: str = typer.Option("all", "--fonts",
                                  help="'all' (bundled DejaVu/STIX + readable system fonts) or 'bundled' "
                                       "(matplotlib's fonts only: identical output on every machine)."),
        force: bool = FORCE,
        as_json: bool = JSON,
    ) -> None:
        """Render labelled text images: DIR/textdet (ICDAR boxes, one per line) and DIR/ocr (line crops)."""
        from ..data.synth import SynthConfig, _check_output_dir, generate_text_set
        from ..errors import UsageError
        from ..files import check_output, display_path

        config = SynthConfig(n=n, seed=seed, fonts=fonts)
        _check_output_dir(out.resolve())  # a file, or a folder of files synth-text did not write: refused
        if out.is_dir() and any(out.iterdir()):  # a previous synth-text output (anything else is always refused)
            if not force:
                raise UsageError(f"{display_path(out)} exists; pass --force to replace it (only a previous "
                                 f"synth-text output is ever replaced), or choose another -o")
        elif not out.exists():
            check_output(out, force=True)  # a folder we can create it in
        with progress() as bar:
            task = bar.add_task("rendering", total=n, rate="")
            summary = generate_text_set(out, config, on_image=lambda i: bar.update(task, completed=i + 1))
        if as_json:
            print_json("synth", summary)
            return
        console.print(f"wrote {summary['images']} images with {summary['lines']} text lines "
                      f"({summary['dont_care']} don't-care) to {out}")
        console.print(f"  detection:   cvtune eval MODEL --task textdet --data {Path(out) / 'textdet'}")
        console.print(f"  recognition: cvtune eval MODEL --task ocr --data {Path(out) / 'ocr'}")

    app.add_typer(group, name="data")
