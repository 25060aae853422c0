"""Building blocks of report.html and report.md, shared by the report core and every section module.

Every piece of HTML text is escaped here, so a section never writes raw markup around
record values; Markdown table cells never break the table ('|' is replaced).
"""
from __future__ import annotations

import html
import re
from typing import Any


def e(value: Any) -> str:
    """HTML-escaped text; None shows as n/a."""
    return html.escape("n/a" if value is None else str(value), quote=True)


def inline(text: Any) -> str:
    """Escaped text whose markdown `code` spans (a file, a tensor name) become <code> elements."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", e(text))


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{e(title)}</h2>\n{body}\n</section>'


def not_run(what: str, reason: str | None = None) -> str:
    return f'<p class="not-run">{e(f"{what}: not run" + (f" ({reason})" if reason else ""))}</p>'


def table(headers: list[str], rows: list[list[Any]], row_classes: list[str] | None = None) -> str:
    """A table of plain-text cells (None shows as n/a); row_classes colour whole rows."""
    classes = row_classes or [""] * len(rows)
    head = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>"
    body = [(f'<tr class="{e(cls)}">' if cls else "<tr>") + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>"
            for row, cls in zip(rows, classes)]
    return "<table>\n" + "\n".join([head, *body]) + "\n</table>"


def items(texts: list[Any]) -> str:
    return "<ul>\n" + "\n".join(f"<li>{e(text)}</li>" for text in texts) + "\n</ul>"


def definitions(terms: list[tuple[str, Any]]) -> str:
    return "<dl>\n" + "\n".join(f"<dt>{e(term)}</dt><dd>{e(text)}</dd>" for term, text in terms) + "\n</dl>"


def figure(title: str, png_uri: str, caption: str | list[str]) -> str:
    """An embedded plot with its caption: one sentence, or a list of them (one per plotted pair)."""
    text = f": {e(caption)}" if isinstance(caption, str) else "<ul>" + "".join(f"<li>{e(c)}</li>" for c in caption) + "</ul>"
    return f'<figure>\n<img alt="{e(title)}" src="{png_uri}">\n<figcaption>{e(title)}{text}</figcaption>\n</figure>'


def md_row(cells: list[Any]) -> str:
    """One Markdown table row; a '|' inside a cell would end the cell early, so it becomes '/'."""
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"
