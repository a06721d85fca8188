"""Tables as text, Markdown and HTML, with every cell escaped for its format."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from typing import Any


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table with columns padded to their widest cell."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
                     .rstrip() for line in lines)


def markdown_escape(text: Any) -> str:
    """Text safe in Markdown (a table cell included): one line, pipes escaped, no tags.

    Markdown renderers pass HTML through, so the characters that make markup (&, <, >)
    become entities; quotes stay as they are, since outside a tag's attribute they mean
    nothing to Markdown or HTML (html.escape's `&#x27;` would show as such in a terminal).
    """
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table with every cell escaped."""
    lines = ["| " + " | ".join(markdown_escape(h) for h in headers) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(markdown_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# Figures ("0.836 ± 0.125", "1,001", "+12.3%", "3.10×", "3/4", "—"), also marked as taken
# under load ("20.0 †"), align right; text left.
_FIGURE = re.compile(r"^[-+−]?[\d,.]+(%|×)?( ± [\d,.]+)?( †)?$|^\d+/\d+$|^—$")


def _html_cell(text: str) -> str:
    css = ' class="num"' if _FIGURE.match(text) else ""
    return f"<td{css}>{html.escape(text)}</td>"


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
               bad: Callable[[Sequence[Any]], bool] | None = None) -> str:
    """An HTML table with every cell escaped; rows for which `bad` holds are highlighted.

    Cells holding a figure get class "num" (right-aligned, unbroken by the page's CSS).
    """
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(_html_cell(str(c)) for c in row)
        css = ' class="bad"' if bad is not None and bad(row) else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")
