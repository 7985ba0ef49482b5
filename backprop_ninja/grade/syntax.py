"""A cell's syntax tree and its nodes, made once per grading and read by every scan of the cell.

The blank-stub test, the allowlist, the history rule, the autograd scan, the added cells' definitions and the rule
probe each read every answer cell; parsing
and walking it once each was a tenth of the grader's time per submission. Callers only read what comes from here
(the trees are shared). grade_notebook calls forget() first, so nothing one grading parsed is kept for the next."""
from __future__ import annotations

import ast
import functools
import threading

_CELLS = 256  # far above the cells of one notebook
# CPython 3.11's ast.parse is not safe in two threads at once: it can raise "SystemError: AST constructor recursion
# depth mismatch" (python/cpython#106905), and a cold grading parses in the canary's thread and in its own. Every
# parse of the grader holds this lock (autograd_scan.py and cell_text.py, inlined into the notebook, are called
# under it: static.scan, definitions.py).
PARSING = threading.Lock()


def parse(source: str) -> ast.Module:
    with PARSING:
        return ast.parse(source)


class Cell:
    """One source's tree, its nodes and their parents, all of the same parse: a cold grading's canary runs in
    another thread, and a forget() between two lookups must never pair one parse's nodes with another's parents."""

    def __init__(self, source: str):
        self.tree = parse(source)
        self.nodes: tuple[ast.AST, ...] = tuple(ast.walk(self.tree))  # in ast.walk's order

    @functools.cached_property
    def parents(self) -> dict[int, ast.AST]:
        """id(node) -> the node it hangs from, for every node but the module."""
        return {id(child): node for node in self.nodes for child in ast.iter_child_nodes(node)}


@functools.lru_cache(maxsize=_CELLS)
def cell(source: str) -> Cell:
    """The parsed source, raising as ast.parse does (errors are not kept)."""
    return Cell(source)


def tree(source: str) -> ast.Module:
    return cell(source).tree


def nodes(source: str) -> tuple[ast.AST, ...]:
    return cell(source).nodes


def forget() -> None:
    cell.cache_clear()
