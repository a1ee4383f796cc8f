"""The report as a document: sections of paragraphs, tables and images, written as HTML, Markdown and JSON."""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Image:
    name: str  # file name under report_files/ (the Markdown links it; the HTML embeds it)
    data: bytes
    alt: str

    @property
    def mime(self) -> str:
        return "image/gif" if self.name.endswith(".gif") else "image/png"


@dataclass
class Table:
    headers: list
    rows: list  # cells: str, or (str, css class) to flag a value ("bad": over the limit, "ok": within)


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)  # str (paragraph), Table or Image


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"


def pm(mean, std, digits: int = 2) -> str:
    return "–" if mean is None or not math.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def flag(text: str, over: bool | None):
    return text if over is None else (text, "bad" if over else "ok")


def share(count, fraction, total) -> str:
    return "–" if count is None else f"{count}/{total} ({100 * fraction:.0f}%)"



CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f0f3f7; } td.num { text-align: right; } td:first-child { white-space: nowrap; }
td.bad { color: #b00020; font-weight: 600; background: #fdecee; } td.ok { color: #11691b; background: #ecf8ee; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; }
.warn { background: #fff4d6; border: 1px solid #e0b84c; padding: 0.5em 1em; margin: 1em 0; }
.meta { color: #666; }
"""


def to_html(sections: list[Section], notes: list[str], generated: str) -> str:
    esc = html.escape
    parts = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'><title>saferl report</title>",
             f"<style>{CSS}</style></head><body>", "<h1>saferl report</h1>",
             f"<p class='meta'>generated {esc(generated)}</p>"]
    if notes:
        parts.append("<div class='warn'><b>Warnings</b><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes)
                     + "</ul></div>")
    for section in sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                head = "".join(f"<th>{esc(h)}</th>" for h in block.headers)
                body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block.rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(block, Image):
                data = base64.b64encode(block.data).decode()
                parts.append(f"<div><img alt='{esc(block.alt)}' src='data:{block.mime};base64,{data}'></div>")
            else:
                parts.append(f"<p>{esc(block)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_cell(cell) -> str:
    text, css = cell if isinstance(cell, tuple) else (cell, "")
    if re.fullmatch(r"–|-?[\d.]+( ± [\d.]+|/\d+ \(\d+%\)|%)?", text):  # numbers right-aligned, words left
        css = f"{css} num".strip()
    return f"<td class='{css}'>{html.escape(text)}</td>" if css else f"<td>{html.escape(text)}</td>"


def to_markdown(sections: list[Section], notes: list[str], generated: str) -> str:
    lines = ["# saferl report", "", f"generated {generated}", ""]
    if notes:
        lines += ["> **Warnings**", ">"] + [f"> - {n}" for n in notes] + [""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                cells = [[c[0] if isinstance(c, tuple) else c for c in row] for row in block.rows]
                lines.append("| " + " | ".join(block.headers) + " |")
                lines.append("|" + "---|" * len(block.headers))
                lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
            elif isinstance(block, Image):
                lines.append(f"![{block.alt}](report_files/{block.name})")
            else:
                lines.append(block)
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def jsonable(value):
    """Strict JSON: numpy scalars to Python, NaN/inf to null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value
