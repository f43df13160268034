"""Fonts for the synthetic text set: matplotlib's bundled DejaVu and STIX fonts, plus readable system fonts.

Only plain text families are used (an allow-list of common sans, serif and mono families) that cover printable
ASCII and are not light/thin: symbol, math, emoji, TeX-encoded and placeholder fonts would draw labels wrong.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import UsageError

FONT_SETS = ("all", "bundled")
BUNDLED = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
           "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf",
           "DejaVuSansMono-Bold.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf")
READABLE_FAMILIES = (
    "dejavu sans", "dejavu serif", "liberation", "noto sans", "noto serif", "noto mono", "free sans", "freesans",
    "free serif", "freeserif", "free mono", "freemono", "ubuntu", "cantarell", "roboto", "open sans", "lato",
    "source sans", "source serif", "source code", "arial", "helvetica", "times", "courier", "verdana", "georgia",
    "tahoma", "trebuchet", "calibri", "cambria", "consolas", "segoe ui", "droid sans", "droid serif", "fira sans",
    "fira mono", "ibm plex", "inter", "pt sans", "pt serif", "carlito", "caladea", "stixgeneral",
)
EXCLUDED_WORDS = ("symbol", "math", "emoji", "display", "light", "thin", "hairline", "icon", "dings", "color")
SYSTEM_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts",
                    "/Library/Fonts", "/System/Library/Fonts", "~/Library/Fonts")


@dataclass(frozen=True)
class FontInfo:
    """A usable font file and its full name (e.g. 'DejaVu Sans Bold'), for meta.json."""

    path: Path
    name: str


def _readable(path: Path) -> FontInfo | None:
    """The font's name when it is a plain text face covering printable ASCII, else None."""
    from fontTools.ttLib import TTFont

    try:
        font = TTFont(str(path), lazy=True, fontNumber=0)
        name = font["name"].getDebugName(4) or font["name"].getDebugName(1) or path.stem
        family = (font["name"].getDebugName(1) or "").lower()
        cmap = font.getBestCmap() or {}
        weight = font["OS/2"].usWeightClass if "OS/2" in font else 400
    except Exception:  # noqa: BLE001 - any unreadable font file is just not used
        return None
    lowered = name.lower()
    if not any(family.startswith(f) or lowered.startswith(f) for f in READABLE_FAMILIES):
        return None
    if any(word in lowered for word in EXCLUDED_WORDS) or weight < 350:
        return None
    if not all(code in cmap for code in range(32, 127)):
        return None
    return FontInfo(path, name)


def bundled_fonts() -> list[FontInfo]:
    """matplotlib's bundled fonts: present wherever cvtune is installed, so output is the same everywhere."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts = [_readable(folder / name) for name in BUNDLED if (folder / name).is_file()]
    return [f for f in fonts if f is not None]


def _system_font_files() -> list[Path]:
    dirs = [Path(os.path.expanduser(d)) for d in SYSTEM_FONT_DIRS]
    if sys.platform == "win32":
        dirs.append(Path(os.environ.get("WINDIR", "C:/Windows")) / "Fonts")
    files: list[Path] = []
    for folder in dirs:
        if folder.is_dir():
            files += [p for p in folder.rglob("*") if p.suffix.lower() in (".ttf", ".otf") and p.is_file()]
    return sorted(set(files))


@lru_cache(maxsize=4)
def find_fonts(which: str = "all") -> tuple[FontInfo, ...]:
    """Fonts to render with, sorted by name (deterministic on a machine). Faces with the same name count once,
    the bundled copy winning."""
    if which not in FONT_SETS:
        raise UsageError(f"unknown font set '{which}'; choose one of: {', '.join(FONT_SETS)}")
    fonts = {f.name: f for f in bundled_fonts()}
    if which == "all":
        for path in _system_font_files():
            info = _readable(path)
            if info is not None and info.name not in fonts:
                fonts[info.name] = info
    if not fonts:
        raise UsageError("no usable fonts found (matplotlib's bundled DejaVu fonts are missing); "
                         "reinstall matplotlib")
    return tuple(fonts[name] for name in sorted(fonts))
