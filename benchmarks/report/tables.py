"""Tables as text, Markdown, HTML and CSV, with every cell escaped for its format.

Text from a report folder (class names, file paths, errors, run ids) is untrusted: anyone
may have edited the folder. This module holds the one escaper of each sink it reaches:
`terminal_escape` (what a terminal prints), `markdown_escape` (report.md, compare
--markdown), `html.escape` (report.html) and `spreadsheet_safe` (runs.csv, summary.csv).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

# What a terminal acts on instead of showing: C0 controls (ESC starts colour and cursor
# sequences, CR returns to overwrite the line), DEL, C1 controls (CSI on its own), and
# the bidirectional overrides and isolates, which reorder what is shown.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED_CONTROLS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def terminal_escape(text: Any) -> str:
    """Text safe in one line of terminal output: every control character shown as its
    escape (\\x1b, \\r, \\n), so that no field can colour, move the cursor, overwrite
    a line or start one."""
    return _CONTROL.sub(_escaped_control, str(text))


def _escaped_control(found: re.Match) -> str:
    character = found[0]
    code = ord(character)
    if character in _NAMED_CONTROLS:
        return _NAMED_CONTROLS[character]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def spreadsheet_safe(value: Any) -> Any:
    """`value`, or for a text a spreadsheet would run as a formula (=, +, -, @, tab or CR
    first), the text behind a single quote, which makes it text (OWASP's advice)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return f"'{value}"
    return value


def csv_text(frame: pd.DataFrame) -> str:
    """The frame as CSV, every cell and header through `spreadsheet_safe`.

    Lines end in CRLF (RFC 4180's line end): the csv writer then quotes every cell holding
    a CR as well as a LF. With LF alone it leaves a lone CR unquoted, which a spreadsheet
    reads as a line end: a field could start a row of its own.
    """
    safe = frame.map(spreadsheet_safe)
    safe.columns = [spreadsheet_safe(str(column)) for column in frame.columns]
    return safe.to_csv(index=False, lineterminator="\r\n")


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table with columns padded to their widest cell, every cell through
    `terminal_escape`."""
    cells = [[terminal_escape(c) for c in line] for line in [headers, *rows]]
    widths = [max(len(x) for x in column) for column in zip(*cells, strict=True)]
    lines = [cells[0], ["-" * w for w in widths], *cells[1:]]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
                     .rstrip() for line in lines)


def markdown_escape(text: Any) -> str:
    """Text safe in Markdown (a table cell included): one line, no markup of its own.

    Markdown renderers pass HTML through, so the characters that make markup (&, <, >)
    become entities. Brackets are escaped, so no link or image (`[text](url)`,
    `![alt](url)`, which a viewer fetches) can form, and backslashes first, so that none
    can undo an escape; pipes are escaped so that a cell stays one cell; control
    characters show as `terminal_escape` shows them (report.md is read in terminals too).
    Quotes stay as they are, since outside a tag's attribute they mean nothing to Markdown
    or HTML (html.escape's `&#x27;` would show as such in a terminal).
    """
    text = html.escape(str(text), quote=False).replace("\n", " ")
    for character in ("\\", "[", "]", "|"):
        text = text.replace(character, f"\\{character}")
    return terminal_escape(text)


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
