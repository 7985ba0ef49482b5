"""Files generated from other files are committed up to date: the unit docs and the example submissions."""
from backprop_ninja import assign, examples, unit_docs


def test_unit_docs_are_current():
    assert unit_docs.DOC.read_text() == unit_docs.render(), "run `python -m backprop_ninja.unit_docs`"


def test_example_submissions_are_current(tmp_path):
    for student, fresh in examples.build(assign.REPO, out=tmp_path).items():
        committed = assign.REPO / fresh.relative_to(tmp_path)
        assert committed.read_text() == fresh.read_text(), f"run `python -m backprop_ninja.examples` ({student})"
