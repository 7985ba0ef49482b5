"""The run-time blocks on autograd in a process that runs student code: the second line behind the grader's static
allowlist (grade/allowlist.py), which refuses the routes below before any cell runs.

`lock_down()` runs once per process before any student code: in the sandbox host before it forks any box (so it
costs nothing per worker), or in an unisolated worker itself. What it does:
- torch computes in one thread (intra- and inter-op): the worker's seccomp filter denies clone, so no thread can be
  made afterwards, and a new thread would start with grad mode on;
- grad mode is switched off and can be switched off again (`torch.no_grad()`, `torch.set_grad_enabled(False)`,
  printing a tensor) but never on: `torch._C._set_grad_enabled(True)`, `torch._C._InferenceMode(False)` (so
  `torch.inference_mode(False)`) and forward-AD's switch raise AutogradBlocked, wherever torch kept a reference;
- the transforms, the engine, `requires_grad_`, `nn.Parameter` and TorchScript's compilers raise AutogradBlocked;
- operators named like a gradient (`*backward*`, `*grad*`) cannot be looked up through `torch.ops` or the
  dispatcher's lookups, and autograd's own backward kernels (`nll_loss_backward`, `_log_softmax_backward_data`,
  `native_batch_norm_backward`, ...) are replaced in the dispatcher itself, so no route reaches them;
- ctypes and the kit's own modules leave sys.modules and torch's attributes, and a fresh import of them fails.

Every blocked call is recorded in CALLS, even if the cell catches the error. What a cell can still reach through
Python's introspection (frames, gc, object.__subclasses__) is said in docs/grader.md, "What remains possible".
"""
from __future__ import annotations

import contextlib
import sys
import types
import warnings

import torch

CALLS: list[str] = []  # what the student's code asked of autograd during the current run
HIDDEN_PACKAGES = frozenset({"ctypes", "_ctypes", "sandboxed", "backprop_ninja"})
JIT_ENTRY_POINTS = ("CompilationUnit", "_jit_script_compile", "_jit_script_compile_overload",
                    "_jit_script_class_compile", "import_ir_module", "import_ir_module_from_buffer",
                    "_import_ir_module_from_package", "_load_for_lite_interpreter",
                    "_load_for_lite_interpreter_from_buffer")
OPERATOR_LOOKUPS = ("_jit_get_operation", "_get_operation_overload", "_dispatch_find_schema_or_throw")
KERNEL_KEYS = ("CPU", "AutogradCPU")  # AutogradCPU is reached first; CPU under inference mode or below autograd

# Captured at import, before anything is replaced: the belt reads grad mode and tensors through these.
_is_grad_enabled = torch._C.is_grad_enabled
_set_grad_enabled = torch._C._set_grad_enabled
_requires_grad = torch._C.TensorBase.requires_grad.__get__
_grad_fn = torch._C.TensorBase.grad_fn.__get__


class AutogradBlocked(RuntimeError):
    """Raised by every blocked autograd entry point in a worker."""


# What student code calls (blockers, switches, stand-ins, the import guard) is defined here, in a namespace that
# holds only the record and the exception: a function's __globals__ then leads nowhere, not to this module nor
# to the worker, whose modules hold ctypes.
_STUDENT_FACING = '''
def blocker(name):
    def blocked(*args, **kwargs):
        CALLS.append(name)
        raise AutogradBlocked(f"{name} is disabled while grading: derive the gradient by hand")
    return blocked


def one_way(name, original, refused):
    def switch(*args, **kwargs):
        if refused(*args, **kwargs):
            CALLS.append(name)
            raise AutogradBlocked(f"{name} would turn grad mode on, which is disabled while grading: "
                                  "derive the gradient by hand")
        return original(*args, **kwargs)
    return switch


def turns_on(mode=True, *args, **kwargs):
    return bool(mode)


def leaves_inference_mode(mode=True, *args, **kwargs):
    return not mode


def gradient_operator(name):
    name = str(name)
    return "backward" in name or "grad" in name


def by_operator_name(name, original):
    def lookup(op_name, *args, **kwargs):
        if gradient_operator(op_name):
            CALLS.append(f"{name}({op_name!r})")
            raise AutogradBlocked(f"the operator {op_name} is disabled while grading: derive the gradient by hand")
        return original(op_name, *args, **kwargs)
    return lookup


def namespace_getattr(original):
    def getattr_(self, op_name):
        if gradient_operator(op_name):
            CALLS.append(f"torch.ops.{self.name}.{op_name}")
            raise AutogradBlocked(f"torch.ops.{self.name}.{op_name} is disabled while grading: derive the "
                                  "gradient by hand")
        return original(self, op_name)
    return getattr_


class ImportRefused:
    """A meta-path finder: the packages it names cannot be imported afresh."""

    def __init__(self, packages):
        self.packages = frozenset(packages)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.packages:
            raise ImportError(f"{fullname} cannot be imported while grading", name=fullname)
        return None


def does_nothing(*args, **kwargs):
    return None


def finite_difference(*args, **kwargs):
    CALLS.append("finite_difference")
    raise AutogradBlocked("finite_difference is disabled while grading: derive the gradient by hand")


class BlockedEngine:
    def __getattr__(self, name):
        return blocker("the autograd engine")


class Ignored:
    """Stands in for matplotlib.pyplot: `plt.imshow(dlogits)`, `plt.figure(figsize=(8, 8))` do nothing."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return does_nothing
'''
_facing = {"__builtins__": __builtins__, "CALLS": CALLS, "AutogradBlocked": AutogradBlocked}
exec(compile(_STUDENT_FACING, "<worker blocks>", "exec"), _facing)
blocker, one_way, by_operator_name = _facing["blocker"], _facing["one_way"], _facing["by_operator_name"]
gradient_operator, does_nothing, Ignored = _facing["gradient_operator"], _facing["does_nothing"], _facing["Ignored"]
finite_difference = _facing["finite_difference"]

_locked = False
_kernels = []  # the dispatcher overrides live as long as their Library object


def lock_down() -> None:
    """Everything above, once per process (a fork inherits it), before any student code runs."""
    global _locked
    if _locked:
        return
    single_threaded_torch()
    preload_autograd_modules()
    _set_grad_enabled(False)
    replacements = _python_blocks()
    _block_operator_lookups()
    _block_backward_kernels()
    _replace_and_hide(replacements)
    sys.meta_path.insert(0, _facing["ImportRefused"](HIDDEN_PACKAGES))
    _locked = True


def single_threaded_torch() -> None:
    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # only possible before the inter-op pool exists; then it is set
        torch.set_num_interop_threads(1)


def preload_autograd_modules() -> None:
    """Import what the blocks patch, once, before workers are forked."""
    import torch._functorch.apis  # noqa: F401
    import torch._functorch.eager_transforms  # noqa: F401
    import torch.autograd.forward_ad  # noqa: F401
    import torch.autograd.functional  # noqa: F401
    import torch.func  # noqa: F401
    import torch.jit  # noqa: F401
    import torch.library  # noqa: F401


def left_grad_mode_on() -> bool:
    """The belt behind the blocks: grad mode found on after a cell (flipped by a route nothing above saw, such as
    ctypes into libc10) is switched off again and reported."""
    if not _is_grad_enabled():
        return False
    _set_grad_enabled(False)
    CALLS.append("something that left grad mode on")
    return True


def tracks_gradients(value) -> bool:
    """An answer that requires grad or has a graph behind it came out of autograd's machinery."""
    try:
        return bool(_requires_grad(value)) or _grad_fn(value) is not None
    except TypeError:  # not a tensor
        return False


def _python_blocks() -> dict:
    """Replace autograd's Python-level entry points in their home modules; return {id(original): (original,
    replacement)} so that the references torch keeps elsewhere are replaced too."""
    import torch._functorch.apis as functorch_apis
    import torch._functorch.eager_transforms as eager_transforms
    import torch.autograd.forward_ad as forward_ad
    import torch.autograd.functional as autograd_functional
    import torch.autograd.graph as autograd_graph
    import torch.autograd.grad_mode as grad_mode
    import torch.func as func

    blocked = {
        torch: ("enable_grad",),
        torch.autograd: ("backward", "grad", "_engine_run_backward", "enable_grad"),
        grad_mode: ("enable_grad",),
        autograd_graph: ("_engine_run_backward",),
        autograd_functional: ("jacobian", "hessian", "vjp", "jvp", "hvp", "vhp"),
        # not unpack_dual: printing a tensor calls it; without a dual tensor it finds no tangent
        forward_ad: ("dual_level", "make_dual", "enter_dual_level", "exit_dual_level"),
        func: ("grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "linearize",
               "functional_call"),
        functorch_apis: ("grad", "grad_and_value"),
        eager_transforms: ("grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "linearize"),
        torch._C: ("_ImperativeEngine", "_EngineBase", "_make_dual", "_enter_dual_level",
                   "_exit_dual_level", *JIT_ENTRY_POINTS),
        torch._C._functorch: ("_grad_increment_nesting", "_jvp_increment_nesting", "_vmap_increment_nesting")
        if hasattr(torch._C, "_functorch") else (),
        torch.jit: ("script", "CompilationUnit", "load"),
    }
    replacements = {}

    def replace(module, name: str, replacement) -> None:
        original = getattr(module, name)
        replacements[id(original)] = (original, replacement)  # the original kept alive: its id stays its own
        setattr(module, name, replacement)

    for module, names in blocked.items():
        public = module.__name__.replace("torch._functorch.apis", "torch.func").replace(
            "torch._functorch.eager_transforms", "torch.func").replace("torch.autograd.grad_mode", "torch")
        for name in names:
            if hasattr(module, name):
                replace(module, name, blocker(f"{public}.{name}".replace("._engine_run_backward", " (engine)")))
    # Grad mode may go off (no_grad, set_grad_enabled(False), printing a tensor), never on.
    replace(torch._C, "_set_grad_enabled", one_way("torch.set_grad_enabled(True)", _set_grad_enabled,
                                                   _facing["turns_on"]))
    replace(torch._C, "_InferenceMode", one_way("torch.inference_mode(False)", torch._C._InferenceMode,
                                                _facing["leaves_inference_mode"]))
    if hasattr(torch._C, "_set_fwd_grad_enabled"):
        replace(torch._C, "_set_fwd_grad_enabled", one_way("forward-mode AD", torch._C._set_fwd_grad_enabled,
                                                           _facing["turns_on"]))
    for name in OPERATOR_LOOKUPS:
        if hasattr(torch._C, name):
            replace(torch._C, name, by_operator_name(f"torch._C.{name}", getattr(torch._C, name)))

    torch.autograd.variable.Variable._execution_engine = _facing["BlockedEngine"]()
    torch.Tensor.backward = blocker("torch.Tensor.backward")
    torch.Tensor.requires_grad_ = blocker("Tensor.requires_grad_")
    torch.Tensor.requires_grad = property(_requires_grad, blocker("setting Tensor.requires_grad"))
    torch.nn.Parameter.__new__ = blocker("torch.nn.Parameter")
    torch.nn.parameter.Parameter.__new__ = torch.nn.Parameter.__new__
    return replacements


def _block_operator_lookups() -> None:
    """torch.ops.<namespace>.<name>: a name like a gradient operator raises; the ones torch already looked up
    (cached as attributes of the namespace) are dropped, so they are looked up again, and refused."""
    namespace_type = torch._ops._OpNamespace
    namespace_type.__getattr__ = _facing["namespace_getattr"](namespace_type.__getattr__)
    for namespace in list(vars(torch.ops).values()):
        if isinstance(namespace, namespace_type):
            for name in [n for n in vars(namespace) if gradient_operator(n)]:
                delattr(namespace, name)


def _block_backward_kernels() -> None:
    """Autograd's backward kernels raise in the dispatcher, whatever route the call took (torch.ops, an OpOverload
    kept in one of torch's tables, torch.nn.grad ...). Forward operators are untouched."""
    names = [name.partition("::")[2] for name in torch._C._dispatch_get_all_op_names()
             if name.startswith("aten::") and "backward" in name]
    names += ["requires_grad_", "retain_grad"]
    library = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel": that is the point
        for name in names:
            kernel = blocker(f"torch.ops.aten.{name}")
            for key in KERNEL_KEYS:
                with contextlib.suppress(RuntimeError):
                    library.impl(name, kernel, key)
    _kernels.append(library)


def _replace_and_hide(replacements: dict) -> None:
    """Put each replacement wherever torch kept the original (a module that imported it by name), and take
    ctypes and the kit's modules out of sys.modules and out of every module's attributes."""
    hidden = [name for name, module in sys.modules.items() if name.partition(".")[0] in HIDDEN_PACKAGES
              or str(getattr(module, "__package__", None) or "").partition(".")[0] in HIDDEN_PACKAGES]
    hidden_modules = {id(sys.modules[name]) for name in hidden}
    for name in hidden:
        del sys.modules[name]
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            original, replacement = replacements.get(id(value), (None, None))
            if original is not None and value is original:
                namespace[key] = replacement
            elif id(value) in hidden_modules or _of_ctypes(value):
                namespace[key] = None  # numpy reads None as "ctypes is not available"


def _of_ctypes(value) -> bool:
    if issubclass(type(value), types.ModuleType):  # type(), not isinstance: no lazy attribute's __class__ runs
        return value.__name__.partition(".")[0] in HIDDEN_PACKAGES
    module = getattr(type(value), "__module__", None)
    return isinstance(module, str) and module.partition(".")[0] in ("ctypes", "_ctypes")
