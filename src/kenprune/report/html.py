"""Assemble a self-contained HTML page from sections of tables and PNG figures (no network to view it).

Images are embedded as base64 data URIs; the only script is a few lines of our own that swap the
image of a figure with several variants (e.g. one matrix per layer) when a selector changes.
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from matplotlib.figure import Figure


@dataclass
class FigureBlock:
    """One figure on the page; with several variants, a selector picks which one is shown."""
    key: str  # unique on the page; also the PNG file name
    caption: str
    variants: dict[str, bytes]  # label -> PNG bytes; the first is shown initially


@dataclass
class Section:
    title: str
    tables: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    figures: list[FigureBlock] = field(default_factory=list)
    details: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)  # collapsed by default
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # shown first, prominently: results not to be trusted


def png_bytes(fig: Figure) -> bytes:
    """Render a figure to PNG (and free it: report figures are rendered once)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, facecolor="white")
    fig.clear()
    return buffer.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def _cell(v: Any) -> str:
    """A table cell; long values (time breakdowns, versions, hashes, command lines) wrap, never cut off."""
    return f"<td>{html.escape(_value(v))}</td>"


def _table(title: str, rows: Mapping[str, Any]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in rows.items())
    caption = f"<caption>{html.escape(title)}</caption>" if title else ""
    return f'<table class="kv">{caption}{body}</table>'


def _figure(block: FigureBlock) -> str:
    labels = list(block.variants)
    first = _data_uri(block.variants[labels[0]])
    selector = ""
    if len(labels) > 1:
        options = "".join(f'<option value="{i}">{html.escape(label)}</option>' for i, label in enumerate(labels))
        selector = (f'<label class="pick">show <select data-figure="{block.key}">{options}</select></label>'
                    f'<script type="application/json" id="variants-{block.key}">'
                    f'{json.dumps([_data_uri(block.variants[l]) for l in labels])}</script>')
    return (f'<figure id="fig-{block.key}">{selector}'
            f'<img id="img-{block.key}" src="{first}" alt="{html.escape(block.caption)}" '
            f'title="click to enlarge">'
            f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")


_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;background:#f4f5f7;
color:#1f2328;line-height:1.45}
header{background:#0b3c5d;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}
nav{padding:8px 32px;background:#e8ecf1;font-size:13px}nav a{margin-right:14px;color:#0b3c5d}
main{max-width:1180px;margin:0 auto;padding:16px 24px 48px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:16px 22px;margin:18px 0}
section h2{margin:0 0 10px;font-size:18px;color:#0b3c5d}
.tables{display:flex;flex-wrap:wrap;gap:18px 36px;align-items:flex-start}
table.kv{border-collapse:collapse;font-size:13px;min-width:320px;max-width:100%;flex:1 1 420px}
table.kv caption{text-align:left;font-weight:600;padding:4px 0}
table.kv th{text-align:left;font-weight:500;color:#57606a;padding:3px 14px 3px 0;vertical-align:top;white-space:nowrap}
table.kv td{padding:3px 0;vertical-align:top;font-variant-numeric:tabular-nums;overflow-wrap:anywhere;
word-break:break-word;white-space:normal}
table.kv tr+tr{border-top:1px solid #eef0f2}
figure{margin:14px 0;text-align:center}figure img{max-width:100%;box-sizing:border-box;cursor:zoom-in;border:1px solid #eef0f2}
figure img.zoom{max-width:none;cursor:zoom-out}figure{overflow-x:auto}
figcaption{font-size:12.5px;color:#57606a;margin-top:4px}
.pick{display:block;text-align:left;font-size:13px;margin-bottom:6px}
.pick select{font-size:13px;margin-left:6px}
details{font-size:13px;margin-top:10px}summary{cursor:pointer;color:#0b3c5d}
.note{font-size:13px;color:#57606a;background:#f6f8fa;border-left:3px solid #0b3c5d;padding:6px 10px}
.warn{font-size:13.5px;color:#6a3b00;background:#fff4e0;border-left:4px solid #d55e00;padding:7px 10px;
font-weight:500}
footer{font-size:12px;color:#57606a;text-align:center;padding-bottom:24px}
"""

_JS = """
document.querySelectorAll("select[data-figure]").forEach(function (sel) {
  var key = sel.getAttribute("data-figure");
  var uris = JSON.parse(document.getElementById("variants-" + key).textContent);
  sel.addEventListener("change", function () { document.getElementById("img-" + key).src = uris[sel.value]; });
});
document.querySelectorAll("figure img").forEach(function (img) {
  img.addEventListener("click", function () { img.classList.toggle("zoom"); });
});
"""


def render_html(title: str, subtitle: str, sections: list[Section], footer: str = "") -> str:
    """The whole page as one string: inline CSS, inline script, embedded images."""
    nav = "".join(f'<a href="#s{i}">{html.escape(s.title)}</a>' for i, s in enumerate(sections))
    parts = []
    for i, section in enumerate(sections):
        body = [f'<p class="warn" role="alert">Warning: {html.escape(w)}</p>' for w in section.warnings]
        body += [f'<p class="note">{html.escape(n)}</p>' for n in section.notes]
        if section.tables:
            body.append('<div class="tables">' + "".join(_table(t, rows) for t, rows in section.tables) + "</div>")
        body += [_figure(f) for f in section.figures]
        body += [f"<details><summary>{html.escape(t)}</summary>{_table('', rows)}</details>"
                 for t, rows in section.details]
        parts.append(f'<section id="s{i}"><h2>{html.escape(section.title)}</h2>{"".join(body)}</section>')
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
            f"<nav>{nav}</nav><main>{''.join(parts)}</main>"
            f"<footer>{html.escape(footer)}</footer><script>{_JS}</script></body></html>")
