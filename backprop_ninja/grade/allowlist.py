"""What an answer cell may contain: only what a gradient needs. Everything else is refused before it runs.

A denylist of names cannot stop autograd inside the student's own process (a thread, a factory keyword built
from strings, `torch.ops`, `ctypes`, a `match` pattern that reads any attribute...). The answer space is small
and known, so this module accepts only it:

- tensor arithmetic, indexing, comparisons, and Python's control flow, functions and plain classes;
- names: the notebook's variables and the student's own; the builtins in ALLOWED_BUILTINS;
- module chains, resolved against the real modules: the functions and constants listed for `torch`,
  `torch.nn.functional`, `torch.linalg`, `torch.special`, `numpy` and `math`; a module is never a value (it can
  only be followed by a listed member), so `F.torch`, `torch.ops`, `x = torch` are refused;
- attributes of anything else (a tensor, a list, a result): the Tensor methods and properties that compute
  values (TENSOR_ATTRIBUTES), the methods of lists, dicts and strings, and attributes the student's own classes
  set; never a name that starts with `_`;
- imports of `math`, `numpy`, `torch`, `torch.nn.functional` (and `matplotlib.pyplot` for a quick plot);
- not: `match`, `**` in a call, `async`, a class with bases or a metaclass, identifiers starting with `_`.

It needs only `ast`, torch and numpy, and never raises: a cell Python cannot parse is left to the caller's
syntax check. The notebook's helpers (`check`, `hint`, `print`...) and `with torch.no_grad():` stay allowed.
"""
from __future__ import annotations

import ast
import builtins
import math
from dataclasses import dataclass

from backprop_ninja.grade import syntax

RULE = ("an answer may use tensor arithmetic, indexing, the listed torch, F, numpy and math functions, Python's "
        "control flow and its own functions (docs/grader.md, What an answer may use)")

# Names the notebook binds before an answer cell runs (the worker binds the same): modules first.
NOTEBOOK_MODULES = {"torch": "torch", "F": "torch.nn.functional", "plt": "matplotlib.pyplot"}
NOTEBOOK_HELPERS = frozenset({"check", "progress", "hint", "show_graph", "draw_progress", "check_backward",
                              "display"})

ALLOWED_BUILTINS = frozenset({
    "abs", "all", "any", "bool", "callable", "chr", "complex", "dict", "divmod", "enumerate", "filter", "float",
    "format", "frozenset", "hash", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min",
    "next", "ord", "pow", "print", "range", "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum",
    "tuple", "zip", "Ellipsis", "NotImplemented", "True", "False", "None", "staticmethod", "classmethod",
    "property", "id", "bytes",
    # raising and catching
    "Exception", "ArithmeticError", "AssertionError", "IndexError", "KeyError", "LookupError",
    "NotImplementedError", "RuntimeError", "StopIteration", "TypeError", "ValueError", "ZeroDivisionError",
})
# Refused by name with a reason of their own: they reach objects by strings, the interpreter or the disk.
INTROSPECTION_BUILTINS = frozenset({
    "getattr", "setattr", "delattr", "hasattr", "vars", "dir", "globals", "locals", "eval", "exec", "compile",
    "open", "input", "breakpoint", "object", "type", "super", "__import__", "memoryview", "help", "exit", "quit",
})

# torch's functions and constants an answer may use (each checked against the installed torch when used).
TORCH_MEMBERS = frozenset({
    # making tensors
    "tensor", "as_tensor", "from_numpy", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "empty",
    "empty_like", "arange", "linspace", "eye", "diag", "diag_embed", "diagonal", "tril", "triu", "rand",
    "rand_like", "randn", "randn_like", "randint", "manual_seed", "Generator", "Tensor", "Size", "finfo", "iinfo",
    # dtypes
    "float", "float32", "float64", "double", "half", "float16", "long", "int", "int64", "int32", "int8", "uint8",
    "bool", "get_default_dtype",
    # shape and joining
    "cat", "concat", "concatenate", "stack", "hstack", "vstack", "split", "chunk", "reshape", "flatten",
    "unflatten", "squeeze", "unsqueeze", "transpose", "permute", "t", "movedim", "broadcast_to", "broadcast_tensors",
    "repeat_interleave", "tile", "flip", "roll", "numel",
    # indexing
    "gather", "scatter", "scatter_add", "index_select", "index_add", "index_put", "index_copy", "masked_fill",
    "masked_select", "take", "take_along_dim", "where", "nonzero", "bincount", "searchsorted", "argwhere",
    # elementwise
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "square", "pow", "float_power",
    "reciprocal", "neg", "negative", "abs", "sign", "sgn", "tanh", "sigmoid", "relu", "sin", "cos", "clamp", "clip",
    "clamp_min", "clamp_max", "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide",
    "floor_divide", "remainder", "fmod", "round", "floor", "ceil", "trunc", "maximum", "minimum", "fmax", "fmin",
    "lerp", "addcmul", "addcdiv", "xlogy", "erf", "isnan", "isinf", "isfinite", "nan_to_num", "heaviside",
    "logical_and", "logical_or", "logical_not", "logical_xor", "eq", "ne", "lt", "le", "gt", "ge", "equal",
    "allclose", "isclose", "softmax", "log_softmax", "logsumexp", "sinh", "cosh", "atanh",
    # reductions
    "sum", "nansum", "mean", "nanmean", "var", "std", "var_mean", "std_mean", "prod", "cumsum", "cumprod", "max",
    "min", "amax", "amin", "aminmax", "argmax", "argmin", "all", "any", "norm", "count_nonzero", "median", "sort",
    "argsort", "topk", "unique", "one_hot_like_unused",
    # products
    "matmul", "mm", "bmm", "mv", "dot", "vdot", "outer", "ger", "einsum", "tensordot", "addmm", "baddbmm",
    "kron", "inner",
    # looking at work, not computing it
    "no_grad", "is_tensor", "is_floating_point", "set_printoptions",
}) - {"one_hot_like_unused"}
FUNCTIONAL_MEMBERS = frozenset({
    "one_hot", "softmax", "log_softmax", "tanh", "relu", "sigmoid", "pad", "normalize", "linear", "embedding",
    "cross_entropy", "nll_loss", "batch_norm", "mse_loss", "gelu", "silu", "softplus", "logsigmoid",
})
LINALG_MEMBERS = frozenset({"norm", "vector_norm", "matrix_norm", "inv", "solve", "det", "pinv", "matmul",
                            "vecdot", "diagonal"})
SPECIAL_MEMBERS = frozenset({"expit", "logit", "softmax", "log_softmax", "logsumexp", "xlogy", "log1p", "expm1",
                             "exp2", "erf", "entr", "xlog1py"})
NUMPY_MEMBERS = frozenset({
    "array", "asarray", "zeros", "zeros_like", "ones", "ones_like", "full", "arange", "linspace", "eye", "exp",
    "log", "sqrt", "tanh", "abs", "sign", "sum", "mean", "var", "std", "max", "min", "argmax", "argmin", "amax",
    "amin", "maximum", "minimum", "dot", "matmul", "outer", "einsum", "where", "allclose", "isclose",
    "array_equal", "clip", "square", "power", "reshape", "transpose", "concatenate", "stack", "float32", "float64",
    "int64", "bool_", "inf", "nan", "pi", "e", "newaxis", "unique", "bincount", "add", "sort", "argsort",
    "count_nonzero", "log1p", "expm1", "isnan", "isfinite", "random_unused",
}) - {"random_unused"}
MATPLOTLIB_MEMBERS = frozenset({"figure", "imshow", "plot", "hist", "show", "title", "xlabel", "ylabel", "legend",
                                "colorbar", "subplot", "subplots", "bar", "scatter", "close", "grid"})

# Where a module chain may go: module path -> its members; "nn" leads only to "functional".
NAMESPACES = {
    "torch": TORCH_MEMBERS | {"nn", "linalg", "special"},
    "torch.nn": frozenset({"functional"}),
    "torch.nn.functional": FUNCTIONAL_MEMBERS,
    "torch.linalg": LINALG_MEMBERS,
    "torch.special": SPECIAL_MEMBERS,
    "numpy": NUMPY_MEMBERS,
    "math": frozenset(name for name in dir(math) if not name.startswith("_")),
    "matplotlib.pyplot": MATPLOTLIB_MEMBERS,
}
# What `import` may bring in (the module, or one member of a namespace with `from ... import`).
IMPORTABLE = frozenset({"math", "numpy", "torch", "torch.nn", "torch.nn.functional", "matplotlib.pyplot"})
_LAZY = frozenset({"numpy", "matplotlib.pyplot"})  # resolved by name only: importing them costs the grader time

# Attributes of values (tensors, results, lists, dicts, strings): the Tensor methods and properties that compute
# values, and the containers' methods. Nothing that reaches autograd, storage, hooks, devices or the interpreter.
TENSOR_ATTRIBUTES = frozenset({
    "shape", "size", "dim", "ndim", "ndimension", "numel", "nelement", "dtype", "device", "T", "mT", "data",
    "item", "tolist", "numpy", "clone", "detach", "contiguous", "is_contiguous", "to", "type", "cpu",
    "float", "double", "half", "long", "int", "bool", "type_as", "view", "view_as", "reshape", "reshape_as",
    "expand", "expand_as", "flatten", "unflatten", "squeeze", "unsqueeze", "permute", "transpose", "t", "movedim",
    "repeat", "repeat_interleave", "flip", "roll", "split", "chunk", "unbind", "narrow", "select", "diag",
    "diagonal", "tril", "triu", "broadcast_to",
    "sum", "nansum", "mean", "nanmean", "var", "std", "prod", "cumsum", "cumprod", "max", "min", "amax", "amin",
    "argmax", "argmin", "all", "any", "norm", "count_nonzero", "median", "sort", "argsort", "topk", "unique",
    "values", "indices", "logsumexp", "softmax", "log_softmax",
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "square", "pow", "float_power",
    "reciprocal", "neg", "negative", "abs", "sign", "sgn", "tanh", "sigmoid", "relu", "sin", "cos", "clamp",
    "clip", "clamp_min", "clamp_max", "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide",
    "floor_divide", "remainder", "fmod", "round", "floor", "ceil", "trunc", "maximum", "minimum", "lerp",
    "addcmul", "addcdiv", "xlogy", "erf", "isnan", "isinf", "isfinite", "nan_to_num", "eq", "ne", "lt", "le",
    "gt", "ge", "equal", "allclose", "isclose", "logical_and", "logical_or", "logical_not", "sinh", "cosh",
    "matmul", "mm", "bmm", "mv", "dot", "outer", "ger", "inner",
    "gather", "scatter", "scatter_add", "index_select", "index_add", "index_put", "index_copy", "index_fill",
    "masked_fill", "masked_select", "take", "take_along_dim", "where", "nonzero", "bincount", "new_zeros",
    "new_ones", "new_full", "new_empty", "new_tensor", "zero_", "fill_", "copy_", "add_", "sub_", "mul_", "div_",
    "pow_", "exp_", "log_", "neg_", "abs_", "sqrt_", "clamp_", "index_add_", "index_put_", "index_copy_",
    "index_fill_", "scatter_", "scatter_add_", "masked_fill_", "tanh_", "sigmoid_", "square_", "reciprocal_",
    "is_floating_point", "element_size", "stride", "storage_offset_unused",
    # containers and strings
    "append", "extend", "insert", "pop", "remove", "index", "count", "copy", "clear", "items", "keys", "get",
    "update", "setdefault", "join", "split", "strip", "format", "upper", "lower", "startswith", "endswith",
    "replace", "ljust", "rjust", "center", "add", "discard", "union", "intersection",
    # small results: finfo, torch.return_types, a float's parts, a Generator's seed
    "eps", "tiny", "real", "imag", "is_integer", "manual_seed",
}) - {"storage_offset_unused"}
# Never owned by a student's class either: attributes that reach frames, code or autograd.
_NEVER = ("gi_", "cr_", "ag_", "f_", "tb_", "co_", "func_", "im_")
AUTOGRAD_ATTRIBUTES = frozenset({"grad", "grad_fn", "backward", "requires_grad", "requires_grad_", "retain_grad",
                                 "retains_grad", "register_hook", "is_leaf", "next_functions"})


@dataclass(frozen=True)
class Refusal:
    line: int
    what: str      # the construct, e.g. "reads `torch.ops`"
    why: str       # the rule it breaks

    @property
    def message(self) -> str:
        return f"line {self.line} {self.what}: {self.why}"


@dataclass(frozen=True)
class Context:
    """What the rest of the submission tells about a cell: module aliases bound by earlier cells (`np` ->
    "numpy"), and attribute names the student's own classes set (`self.value = ...`)."""
    modules: tuple[tuple[str, str], ...] = ()
    owned_attributes: frozenset[str] = frozenset()

    @classmethod
    def of(cls, sources: list[str]) -> "Context":
        modules, owned = {}, set()
        for source in sources:
            if _parse(source) is None:
                continue
            modules.update(_imported_modules(syntax.nodes(source)))
            owned |= _owned_attributes(syntax.nodes(source))
        return cls(tuple(sorted(modules.items())), frozenset(owned))


def check(source: str, context: Context = Context()) -> Refusal | None:
    """The first construct of `source` outside what an answer may use, or None. A cell that does not parse gives
    None (the caller reports its syntax error). Never raises."""
    tree = _parse(source)
    if tree is None:
        return None
    try:
        return _Checker(source, context).first_refusal()
    except (RecursionError, MemoryError):
        return Refusal(1, "is nested too deeply to check", "split it into smaller steps")


def _parse(source: str) -> ast.Module | None:
    try:
        return syntax.tree(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _imported_modules(nodes: tuple[ast.AST, ...]) -> dict[str, str]:
    """Names bound to an allowed module by imports: `import numpy as np` -> {"np": "numpy"}."""
    bound = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in NAMESPACES or alias.name.split(".")[0] in NAMESPACES:
                    bound[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                        alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in NAMESPACES:
                    bound[alias.asname or alias.name] = full
    return bound


def _owned_attributes(nodes: tuple[ast.AST, ...]) -> set[str]:
    """Attributes the student's code sets (`self.value = ...`) or defines in a class body."""
    owned = set()
    for node in nodes:
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            owned.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    owned.add(item.name)
                elif isinstance(item, ast.Assign):
                    owned |= {t.id for t in item.targets if isinstance(t, ast.Name)}
    return {name for name in owned
            if not name.startswith("_") and not name.startswith(_NEVER) and name not in AUTOGRAD_ATTRIBUTES}


class _Checker:
    def __init__(self, source: str, context: Context):
        parsed = syntax.cell(source)  # nodes and parents of one parse
        self.nodes, self.parents = parsed.nodes, parsed.parents
        self.modules = {**NOTEBOOK_MODULES, **dict(context.modules), **_imported_modules(self.nodes)}
        self.owned = context.owned_attributes | _owned_attributes(self.nodes)
        # names the cell itself binds: a student's own `max = ...` or `def f` is theirs to use
        self.bound = {n.id for n in self.nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}

    def first_refusal(self) -> Refusal | None:
        nodes = sorted((n for n in self.nodes if hasattr(n, "lineno")),
                       key=lambda n: (n.lineno, n.col_offset, getattr(n, "end_col_offset", 0) or 0))
        for node in nodes:
            refusal = self._refuse(node)
            if refusal is not None:
                return refusal
        return None

    def _refuse(self, node: ast.AST) -> Refusal | None:
        line = node.lineno
        statement = _STATEMENTS.get(type(node).__name__)
        if statement:
            return Refusal(line, f"uses {statement}", "it is not needed for a gradient and is off limits here")
        if isinstance(node, ast.ClassDef) and (node.bases or node.keywords):
            return Refusal(line, f"defines class `{node.name}` with a base class or metaclass",
                           "an answer's classes must be plain (`class Name:`)")
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            return self._identifier(line, node.name, in_class=isinstance(self.parents.get(id(node)), ast.ClassDef))
        if isinstance(node, ast.arg):
            return self._identifier(line, node.arg)
        if isinstance(node, ast.keyword) and node.arg is None:
            return Refusal(line, "passes `**` keyword arguments to a call",
                           "name each keyword argument (a keyword built from strings can ask for a gradient)")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            return self._import(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            return next((self._identifier(line, name) for name in node.names if name.startswith("_")), None)
        if isinstance(node, ast.ExceptHandler) and node.name:
            return self._identifier(line, node.name)
        return None

    def _identifier(self, line: int, name: str, in_class: bool = False) -> Refusal | None:
        if name == "_" or not name.startswith("_"):
            return None
        if in_class and name.startswith("__") and name.endswith("__"):
            return None  # `def __init__(self)` in a plain class defines a method; reading dunders stays refused
        return Refusal(line, f"uses the name `{name}`", "names that start with `_` are off limits in an answer")

    def _import(self, node: ast.Import | ast.ImportFrom) -> Refusal | None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in IMPORTABLE:
                    return Refusal(node.lineno, f"imports `{alias.name}`",
                                   "an answer may import only math, numpy, torch and torch.nn.functional")
                if alias.asname:
                    refusal = self._identifier(node.lineno, alias.asname)
                    if refusal is not None:
                        return refusal
            return None
        module = node.module or ""
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if node.level or alias.name == "*":
                return Refusal(node.lineno, f"imports `{alias.name}` from `{'.' * node.level}{module}`",
                               "import a module by its name, and each function you use by its name")
            if full in IMPORTABLE or (module in NAMESPACES and alias.name in NAMESPACES[module]):
                if (alias.asname or alias.name).startswith("_"):
                    return self._identifier(node.lineno, alias.asname or alias.name)
                continue
            return Refusal(node.lineno, f"imports `{full}`",
                           "an answer may import only math, numpy, torch, torch.nn.functional and their listed "
                           "functions")
        return None

    def _name(self, node: ast.Name) -> Refusal | None:
        name, line = node.id, node.lineno
        refusal = self._identifier(line, name)
        if refusal is not None:
            return refusal
        if not isinstance(node.ctx, ast.Load):
            return None
        if name in INTROSPECTION_BUILTINS:
            return Refusal(line, f"uses `{name}`",
                           "it reaches objects by name or the interpreter itself, which a gradient never needs")
        if name in self.modules and not self._continues_chain(node):
            return Refusal(line, f"uses the module `{name}` as a value",
                           "call its functions (`torch.exp(x)`), but never pass, store or index a module")
        if (hasattr(builtins, name) and name not in ALLOWED_BUILTINS and name not in self.bound
                and name not in self.modules and name not in NOTEBOOK_HELPERS):
            return Refusal(line, f"uses the built-in `{name}`", RULE)
        return None

    def _continues_chain(self, node: ast.expr) -> bool:
        parent = self.parents.get(id(node))
        return isinstance(parent, ast.Attribute) and parent.value is node

    def _attribute(self, node: ast.Attribute) -> Refusal | None:
        if self._continues_chain(node):
            return None  # the outermost attribute of a chain checks the whole chain
        parts, base = [], node
        while isinstance(base, ast.Attribute):
            parts.append(base.attr)
            base = base.value
        parts.reverse()
        line = node.lineno
        underscore = next((p for p in parts if p.startswith("_")), None)
        if underscore:
            return Refusal(line, f"reads `.{underscore}`", "attributes that start with `_` are off limits in an answer")
        if isinstance(base, ast.Name) and base.id in self.modules:
            if not isinstance(node.ctx, ast.Load):
                return Refusal(line, f"changes `{base.id}.{'.'.join(parts)}`",
                               "an answer computes with the libraries; it never changes them")
            return self._module_chain(line, self.modules[base.id], base.id, parts)
        return self._value_attributes(line, parts)

    def _module_chain(self, line: int, module: str, spelled: str, parts: list[str]) -> Refusal | None:
        path, shown = module, spelled
        for index, part in enumerate(parts):
            shown += "." + part
            members = NAMESPACES.get(path)
            if members is None:  # past the module chain: a function, class or constant of a listed module
                return self._value_attributes(line, parts[index:], after=shown.rsplit(".", 1)[0])
            if part not in members:
                return Refusal(line, f"uses `{shown}`", RULE)
            if not _exists(path, part):
                return Refusal(line, f"uses `{shown}`", f"the installed {path} has no `{part}`")
            path = f"{path}.{part}"
        if path in NAMESPACES:
            return Refusal(line, f"uses the module `{shown}` as a value",
                           "call its functions (`torch.exp(x)`), but never pass, store or index a module")
        return None

    def _value_attributes(self, line: int, parts: list[str], after: str = "") -> Refusal | None:
        for part in parts:
            if part in AUTOGRAD_ATTRIBUTES:
                return Refusal(line, f"reads `.{part}`", "autograd's answer does not count here; derive the "
                                                         "gradient by hand")
            if part not in TENSOR_ATTRIBUTES and part not in self.owned:
                where = f" of `{after}`" if after else ""
                return Refusal(line, f"reads `.{part}`{where}",
                               "it is not a tensor method or property an answer needs (" + RULE + ")")
        return None


_STATEMENTS = {"Match": "a `match` statement", "AsyncFunctionDef": "`async def`", "AsyncFor": "`async for`",
               "AsyncWith": "`async with`", "Await": "`await`"}


def _exists(path: str, member: str) -> bool:
    """Whether the installed module has the member (torch and math are checked; numpy and pyplot by name only,
    so that checking a cell never imports matplotlib in the grader)."""
    if path in _LAZY:
        return True
    module = {"math": math}.get(path)
    if module is None:
        import importlib

        module = importlib.import_module(path)
    return hasattr(module, member)
