"""A cell's syntax tree and its nodes, made once per grading and read by every scan of the cell.

The allowlist, the engine's history rule and the autograd scan each read every answer cell; parsing and walking
it once each was a tenth of the grader's time per submission. Callers only read what comes from here (the trees
are shared). grade_answers calls forget() first, so nothing one grading parsed is kept for the next."""
from __future__ import annotations

import ast
import functools

_CELLS = 256  # far above the cells of one notebook


@functools.lru_cache(maxsize=_CELLS)
def tree(source: str) -> ast.Module:
    """ast.parse(source), raising as it does (errors are not kept)."""
    return ast.parse(source)


@functools.lru_cache(maxsize=_CELLS)
def nodes(source: str) -> tuple[ast.AST, ...]:
    """Every node of tree(source), in ast.walk's order."""
    return tuple(ast.walk(tree(source)))


@functools.lru_cache(maxsize=_CELLS)
def parents(source: str) -> dict[int, ast.AST]:
    """id(node) -> the node it hangs from, for every node of tree(source) but the module."""
    return {id(child): node for node in nodes(source) for child in ast.iter_child_nodes(node)}


def forget() -> None:
    for cached in (tree, nodes, parents):
        cached.cache_clear()
