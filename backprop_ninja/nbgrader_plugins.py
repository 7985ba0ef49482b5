"""Two small nbgrader preprocessors that close holes in nbgrader 0.9.6's defaults (see nbgrader_config.py).

nbgrader scores a test cell from its outputs: any stderr stream scores 0, and the first `execute_result` is read as
partial credit. Student code can reach both (a torch warning; `sys.displayhook(1.0)`), so in grade cells we keep
only what a verdict should rest on: whether the cell raised.
"""
from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import is_grade


class ScoreOnErrorsOnly(NbGraderPreprocessor):
    """In grade cells, drop stderr streams and execute_results, so points depend only on raised errors."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and is_grade(cell):
            cell.outputs = [
                out for out in cell.outputs
                if out.output_type != "execute_result"
                and not (out.output_type == "stream" and out.get("name") == "stderr")
            ]
        return cell, resources


class ShortTracebacks(NbGraderPreprocessor):
    """Replace every error traceback by one line, `Name: message`.

    Tracebacks quote the source of the failing line, which in a test cell can be hidden-test code; feedback must not
    show it. The error name and message stay, so the student still learns what failed.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            for out in cell.outputs:
                if out.output_type == "error":
                    out.traceback = [f"{out.ename}: {out.evalue}"]
        return cell, resources
