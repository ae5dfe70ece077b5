"""A self-contained HTML report: sections of text, figures, tables and videos in one folder.

Figures are PNG files beside ``report.html`` and videos are copied next to it, so the folder opens in any
browser (the mp4s play with the ``<video>`` element) and can be zipped and shared.
"""
from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

__all__ = ["Report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}figure{margin:1em 0}figcaption{font-size:.85em;color:#555}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em}
pre{background:#f6f6f6;padding:.6em;overflow:auto}
"""


@dataclass
class Report:
    """Collect sections, then :meth:`write` ``<folder>/report.html``."""

    folder: Path
    title: str = "SadTalker Lab report"
    parts: list[str] = field(default_factory=list)
    _n: int = 0

    def __post_init__(self):
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def code(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def figure(self, fig, caption: str = "") -> Path:
        """Save a matplotlib figure as PNG beside the report and show it."""
        import matplotlib.pyplot as plt

        self._n += 1
        path = self.folder / f"figure_{self._n:02d}.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        self.parts.append(f'<figure><img src="{path.name}" style="max-width:100%">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        return path

    def table(self, df, caption: str = "", digits: int = 3) -> None:
        """A pandas DataFrame as an HTML table (NaN shown as n/a)."""
        body = df.to_html(na_rep="n/a", float_format=lambda v: f"{v:.{digits}f}", border=0)
        self.parts.append(f"<figure>{body}<figcaption>{html.escape(caption)}</figcaption></figure>")

    def video(self, path: str | Path, caption: str = "", width: int = 384) -> Path:
        """Copy an mp4 beside the report and embed a player."""
        path = Path(path)
        dst = self.folder / path.name
        if path.resolve() != dst.resolve():
            shutil.copy2(path, dst)
        self.parts.append(f'<figure><video src="{dst.name}" controls width="{width}"></video>'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        return dst

    def write(self) -> Path:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
        doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
               f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1><p>{stamp}</p>"
               + "\n".join(self.parts) + "</body></html>")
        out = self.folder / "report.html"
        out.write_text(doc, encoding="utf-8")
        return out
