"""Grid specs: bad input is one line naming the problem and its line, exit 2, nothing written."""

import pytest

from benchmarks.grid import __main__ as grid_cli
from benchmarks.grid.driver import check_resumable
from benchmarks.grid.spec import parse_spec, spec_differences
from benchmarks.record.layout import GRID_SPEC_FILE
from tests.grid_specs import SEARCH_SPEC, TINY_SPEC, write_spec


def _line_number(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize("old, new, problem, needle", [
    ("batch_size = 8", "batch_size = 8\nlearning_rat = 0.1", "unknown field 'learning_rat'",
     "learning_rat ="),
    ("learning_rate = [1e-3, 3e-3]", "lr = [1e-3]", "unknown axis 'lr'", "lr ="),
    ('models = ["proposed_cnn"]', 'models = ["lenet"]', "unknown model 'lenet'", "models ="),
    ("learning_rate = [1e-3, 3e-3]", "learning_rate = []", "axis learning_rate is empty",
     "learning_rate ="),
    ("learning_rate = [1e-3, 3e-3]", 'learning_rate = [1e-3, "fast"]',
     "learning_rate must be a number", "learning_rate ="),
    ("seeds = 1", 'seeds = "two"', "seeds must be an integer", "seeds ="),
    ("epochs = 1", "epochs = 0", "epochs must be an integer ≥ 1", "epochs ="),
    ("learning_rate = [1e-3, 3e-3]", "seed = [0, 1]", "seed (line 15) cannot be an axis", "seed ="),
    ("[measure]", "[measures]", "unknown table [measures]", "[measures]"),
    ('dataset = "synthetic"', 'datasets = []', "datasets is empty", "datasets ="),
    ('dataset = "synthetic"', 'datasets = ["synthetic", "ck+", "synthetic"]',
     "datasets must name each one once (synthetic repeated)", "datasets ="),
    ('dataset = "synthetic"', 'datasets = ["synthetic", "affectnet"]',
     "unknown dataset 'affectnet'", "datasets ="),
    ('dataset = "synthetic"', 'dataset = "synthetic"\ndatasets = ["ck+"]',
     "sets both dataset and datasets", "datasets ="),
    ('dataset = "synthetic"', 'datasets = ["synthetic", "ck+"]\ndata_dir = "/data/ck"',
     "data_dir names one folder but the grid has 2 datasets", "data_dir ="),
    ('dataset = "synthetic"\n', "", "lacks dataset: name the dataset (or datasets)", "[grid]"),
    # The report's reference backend: one of the spec's backends, read by backend_choice.
    ('backends = ["torch"]', 'backends = ["torch"]\nreference_backend = "tf"',
     "reference_backend 'tf' is not among the backends compared (torch); name one of them, "
     "or add it to backends", "reference_backend ="),
    ('backends = ["torch"]', 'backends = ["torch"]\nreference_backend = "tensorflow"',
     "reference_backend 'tensorflow' is not among the backends compared (torch)",
     "reference_backend ="),
    ('backends = ["torch"]', 'backends = ["torch"]\nreference_backend = ["torch"]',
     'reference_backend must be text or "none"', "reference_backend ="),
])
def test_bad_spec_is_one_line_naming_its_line(old, new, problem, needle, tmp_path, capsys):
    _refused(TINY_SPEC, old, new, problem, needle, tmp_path, capsys)


def _refused(base, old, new, problem, needle, tmp_path, capsys):
    text = base.replace(old, new)
    assert text != base
    spec = write_spec(tmp_path, text)
    out = tmp_path / "out"
    assert grid_cli.main([str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and problem in err, err
    assert f"(line {_line_number(text, needle)})" in err, err
    assert not out.exists()  # nothing written


# A search's spec is checked without Optuna: these run where it is not installed.
@pytest.mark.parametrize("old, new, problem, needle", [
    ("trials = 4", "trials = 0", "trials must be an integer ≥ 1", "trials ="),
    ("trials = 4\n", "", "[search] (line 14) lacks trials", "[search]"),
    ('sampler = "tpe"', 'sampler = "cmaes"', "sampler must be one of tpe, random", "sampler ="),
    ("pruning = true", "prune = true", "unknown field 'prune' in [search]", "prune ="),
    ("log = true }", "log = true, step = 1e-3 }", "step cannot go with log = true",
     "learning_rate ="),
    ("low = 1e-4", "low = 0.0", "a log range needs low > 0", "learning_rate ="),
    ("high = 1e-2", "high = 1e-5", "low must be below high", "learning_rate ="),
    ("high = 1e-2", "hi = 1e-2", "the range of learning_rate has an unknown key 'hi'",
     "learning_rate ="),
    ("learning_rate = { low", "optimizer = { low", "optimizer takes one of adam",
     "optimizer ="),
    ('augment = ["none", "light"]', "dropout = { low = 0.0, high = 1.5 }",
     "at learning_rate=0.01, dropout=1.5: dropout must be None or in [0, 1)", "dropout ="),
    ('augment = ["none", "light"]', 'augment = ["none", "heavy"]', "augment must be one of",
     "augment ="),
])
def test_bad_search_spec_is_one_line_naming_its_line(old, new, problem, needle, tmp_path,
                                                      capsys):
    _refused(SEARCH_SPEC, old, new, problem, needle, tmp_path, capsys)


def test_a_range_needs_a_search_and_a_search_needs_an_axis():
    grid = SEARCH_SPEC.replace(SEARCH_SPEC[SEARCH_SPEC.index("[search]"):
                                           SEARCH_SPEC.index("[axes]")], "")
    with pytest.raises(ValueError, match=r"learning_rate is a range, which only a search"):
        parse_spec(grid, "s.toml")
    bare = SEARCH_SPEC[:SEARCH_SPEC.index("[axes]")] + SEARCH_SPEC[SEARCH_SPEC.index("[measure]"):]
    with pytest.raises(ValueError, match=r"\[search\] \(line 14\) searches no axis"):
        parse_spec(bare, "s.toml")
    spec = parse_spec(SEARCH_SPEC, "s.toml")
    assert spec.search.trials == 4 and spec.search.pruning
    # The corners are checked before any run: every range at each end, every choice.
    assert tuple(spec.points()) == ({"learning_rate": 1e-4, "augment": "none"},
                           {"learning_rate": 1e-2, "augment": "light"})
    assert spec.axes_json()["learning_rate"] == {"low": 1e-4, "high": 1e-2, "log": True,
                                                 "step": None}


def test_points_cross_the_axes_and_resolve_through_the_recipe():
    text = TINY_SPEC.replace("learning_rate = [1e-3, 3e-3]",
                             'learning_rate = [1e-3, 3e-3]\naugment = ["none", "light"]')
    spec = parse_spec(text, "s.toml")
    assert [tuple(p.values()) for p in spec.points()] == [
        (1e-3, "none"), (1e-3, "light"), (3e-3, "none"), (3e-3, "light")]
    grids = [grid for _, grid in spec.cells()]
    trains = [grid.train["proposed_cnn"] for grid in grids]
    assert [t.learning_rate for t in trains] == [1e-3, 1e-3, 3e-3, 3e-3]
    assert trains[0].augment != trains[1].augment and trains[0].augment == trains[2].augment
    assert all(t.epochs == 1 and t.batch_size == 8 for t in trains)  # [fixed]
    assert spec.default_value("proposed_cnn", "augment", "synthetic") == "none"
    assert grids[0].threads == 1 and grids[0].save_weights == "none"


def test_several_datasets_run_every_point_each_under_its_own_recipe():
    text = TINY_SPEC.replace('dataset = "synthetic"', 'datasets = ["synthetic", "ck+"]')
    spec = parse_spec(text.replace('recipe = "none"', 'recipe = "auto"'), "s.toml")
    assert spec.datasets == ("synthetic", "ck+")
    cells = list(spec.cells())
    assert [(grid.dataset, point["learning_rate"]) for point, grid in cells] == [
        ("synthetic", 1e-3), ("synthetic", 3e-3), ("ck+", 1e-3), ("ck+", 3e-3)]
    # "auto" takes each dataset's shipped recipe; [fixed] and the point stay on top.
    assert spec.recipe("synthetic").source.endswith("synthetic.toml")
    assert spec.recipe("ck+").source.endswith("ck+.toml")
    assert {grid.recipe.source for _, grid in cells[2:]} == {spec.recipe("ck+").source}
    assert all(grid.train["proposed_cnn"].epochs == 1 for _, grid in cells)
    # A search optimises one figure: one dataset per search spec.
    several = SEARCH_SPEC.replace('dataset = "synthetic"', 'datasets = ["synthetic", "ck+"]')
    with pytest.raises(ValueError, match="a search optimises one dataset's validation"):
        parse_spec(several, "s.toml")


def test_an_axis_also_fixed_is_refused():
    text = TINY_SPEC.replace("batch_size = 8", "batch_size = 8\nlearning_rate = 0.1")
    with pytest.raises(ValueError, match=r"learning_rate is both in \[fixed\] \(line 13\)"):
        parse_spec(text, "s.toml")


def test_the_reference_backend_is_kept_for_the_report_and_is_no_part_of_a_run(tmp_path):
    text = TINY_SPEC.replace('backends = ["torch"]',
                             'backends = ["tf", "torch"]\nreference_backend = "tf"')
    spec = parse_spec(text, "s.toml")
    assert spec.reference_backend == "tf"
    assert all(grid.reference_backend == "tf" for _, grid in spec.cells())
    assert parse_spec(TINY_SPEC, "s.toml").reference_backend is None  # the default rule
    assert parse_spec(text.replace('"tf"\n', '"none"\n'), "s.toml").reference_backend is None
    # Judging the same runs against another backend is a resume, not another study: a
    # folder that ran the spec takes the other reference without --extend.
    other = text.replace('reference_backend = "tf"', 'reference_backend = "torch"')
    assert spec_differences(text, other, "s.toml") == []
    (tmp_path / GRID_SPEC_FILE).write_text(text)
    check_resumable(parse_spec(other, "other.toml"), tmp_path, extend=False)
    with pytest.raises(ValueError, match=r"\[grid\] seeds: 1 there, 2 here: resume with"):
        check_resumable(parse_spec(other.replace("seeds = 1", "seeds = 2"), "other.toml"),
                        tmp_path, extend=False)
