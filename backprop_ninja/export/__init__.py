"""Turn a graded SubmissionResult into what people read: Gradescope's results.json, a terminal table."""
from backprop_ninja.export.gradescope import to_gradescope, write_results
from backprop_ninja.export.table import format_table

__all__ = ["to_gradescope", "write_results", "format_table"]
