"""User band math through an allow-list, evaluated with numexpr and never with ``eval``.

An expression is parsed with :mod:`ast`, checked node by node against a small grammar
(numbers, band names, arithmetic, comparisons and a few numexpr functions) and re-rendered
as a fully parenthesised numexpr string in which every name is replaced by its canonical
variable (``nir`` -> ``B08``). Evaluation returns float32 with NaN wherever an input is
nodata or the arithmetic is undefined, so nodata never turns into a number.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numexpr
import numpy as np

from madrone.bands import normalize_band
from madrone.errors import ExpressionError

# Function name as the user writes it -> (numexpr function, number of arguments).
_FUNCTIONS: dict[str, tuple[str, int]] = {
    "sqrt": ("sqrt", 1),
    "abs": ("abs", 1),
    "exp": ("exp", 1),
    "log": ("log", 1),
    "log10": ("log10", 1),
    "sin": ("sin", 1),
    "cos": ("cos", 1),
    "tan": ("tan", 1),
    "arctan": ("arctan", 1),
    "arctan2": ("arctan2", 2),
    "where": ("where", 3),
}
# Element-wise minimum/maximum exist only in recent numexpr; numexpr's own ``min``/``max``
# are reductions, so Python's two-argument ``min``/``max`` map to the element-wise ones.
if "minimum" in numexpr.expressions.functions:
    _FUNCTIONS |= {
        "minimum": ("minimum", 2),
        "maximum": ("maximum", 2),
        "min": ("minimum", 2),
        "max": ("maximum", 2),
    }

_BINARY_OPS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
    ast.Mod: "%",
    ast.BitAnd: "&",
    ast.BitOr: "|",
}
_UNARY_OPS: dict[type[ast.unaryop], str] = {ast.USub: "-", ast.UAdd: "", ast.Invert: "~"}
_COMPARE_OPS: dict[type[ast.cmpop], str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}
# Spelling of refused operators, so the message names the token the user typed.
_REFUSED_OPS: dict[type[ast.AST], str] = {
    ast.FloorDiv: "//",
    ast.MatMult: "@",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.And: "and",
    ast.Or: "or",
    ast.Not: "not",
}
MAX_EXPRESSION_LENGTH = 1000
_ALLOWED_BANDS_HINT = (
    "band ids B01..B12 and B8A (also B4, b08), common names (red, nir, swir16, ...) "
    "and catalog letters (R, N, S1, ...)"
)


@dataclass(frozen=True)
class CompiledExpression:
    """A checked expression, ready for numexpr.

    Attributes:
        text: The expression as written.
        expression: The numexpr string, with canonical variable names substituted.
        variables: Canonical variables used, sorted.
        names: Pairs of (name as written, canonical variable), sorted.
    """

    text: str
    expression: str
    variables: tuple[str, ...]
    names: tuple[tuple[str, str], ...]


def compile_expression(text: str, names: Mapping[str, str] | None = None) -> CompiledExpression:
    """Parse and check band math, refusing anything outside the allow-list.

    Args:
        text: Expression such as ``(B08-B04)/(B08+B04)`` or ``(nir-red)/(nir+red)``.
        names: Mapping from a name as written to its canonical variable (``{"N": "B08"}``).
            When None, names are Sentinel-2 band aliases resolved by
            :func:`madrone.bands.normalize_band`.

    Raises:
        ExpressionError: The text is empty, malformed or uses something not allowed.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("empty expression: give band math such as (B08-B04)/(B08+B04)")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"expression {text[:40]!r}... is {len(text)} characters long; "
            f"the limit is {MAX_EXPRESSION_LENGTH}"
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
        renderer = _Renderer(text, names)
        rendered = renderer.render(tree.body)
    except SyntaxError as e:
        raise ExpressionError(f"syntax error in expression {text!r}: {e.msg}") from e
    except RecursionError as e:
        raise ExpressionError(f"expression {text!r} is nested too deeply") from e
    if not renderer.used:
        raise ExpressionError(f"expression {text!r} uses no band")
    compiled = CompiledExpression(
        text=text,
        expression=rendered,
        variables=tuple(sorted(set(renderer.used.values()))),
        names=tuple(sorted(renderer.used.items())),
    )
    _check_types(compiled)
    return compiled


def evaluate(
    compiled: CompiledExpression,
    arrays: Mapping[str, np.ndarray],
    constants: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Evaluate a compiled expression on arrays keyed by canonical variable.

    Args:
        compiled: Result of :func:`compile_expression`.
        arrays: Reflectance arrays (float32, NaN for nodata) keyed by canonical variable.
        constants: Scalar values for canonical variables that are not arrays.

    Returns:
        float32 array; NaN where any input is NaN or the result is not finite.

    Raises:
        ExpressionError: A variable has no value, or numexpr refuses the inputs.
    """
    constants = constants or {}
    local: dict[str, np.ndarray | float] = {}
    inputs: list[np.ndarray] = []
    for variable in compiled.variables:
        if variable in arrays:
            array = np.asarray(arrays[variable])
            if not np.issubdtype(array.dtype, np.floating):
                array = array.astype(np.float32)
            local[variable] = array
            inputs.append(array)
        elif variable in constants:
            local[variable] = float(constants[variable])
        else:
            given = ", ".join(sorted([*arrays, *constants])) or "nothing"
            raise ExpressionError(
                f"expression {compiled.text!r} needs {variable}, but only {given} was given"
            )
    try:
        result = numexpr.evaluate(compiled.expression, local_dict=local)
    except (TypeError, ValueError, KeyError, NotImplementedError) as e:
        raise ExpressionError(f"cannot evaluate {compiled.text!r}: {e}") from e
    return _to_float32(result, inputs)


@dataclass(frozen=True)
class DnBand:
    """How a band's digital numbers become reflectance: (DN + offset) * scale, and which DN
    values mean "no value" (float DN arrays may also carry NaN). ``dn_range``, when known:
    the smallest and largest DN of the array it describes, so a test no value can pass is
    skipped."""

    offset: float
    scale: float
    invalid: tuple[float, ...] = ()
    dn_range: tuple[float, float] | None = None


def evaluate_dn(
    compiled: CompiledExpression,
    dn: Mapping[str, np.ndarray],
    bands: Mapping[str, DnBand],
    constants: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Evaluate on raw digital numbers: each band variable becomes its reflectance, and a
    pixel where any band is invalid (or the arithmetic is not finite) comes out NaN.

    Equal, bit for bit, to converting every band to NaN-masked float32 reflectance and
    calling :func:`evaluate`: the engine's hot path. Validity is a numpy mask applied after
    numexpr, not a ``where`` inside it, because numexpr on one thread pays per operation and
    per element, and the guards cost more than the index itself.
    """
    local: dict[str, object] = {}
    for name in compiled.variables:
        if name in dn:
            local[name] = _reflectance(dn[name], bands[name])
        elif constants is not None and name in constants:
            local[name] = float(constants[name])
        else:
            raise ExpressionError(f"expression {compiled.text!r} needs {name}")
    try:
        result = numexpr.evaluate(compiled.expression, local_dict=local)
    except (TypeError, ValueError, KeyError, NotImplementedError) as e:
        raise ExpressionError(f"cannot evaluate {compiled.text!r}: {e}") from e
    out = np.asarray(result).astype(np.float32, copy=False)
    nodata = np.isinf(out)  # division by zero; NaN already is NaN
    for name in sorted(dn):
        _mark_invalid_dn(dn[name], bands[name], nodata)
    np.copyto(out, np.float32(np.nan), where=nodata)
    return out


# DN types whose reflectance numpy computes in the very type numexpr does: (DN + offset) *
# scale with float32 offset and scale is float32 for these integers, float64 for float64.
_NUMPY_DN_TYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16)}


def _reflectance(array: np.ndarray, band: DnBand) -> np.ndarray:
    """``(DN + offset) * scale``, the same bits as numexpr gives for it inside an expression
    (numexpr types bottom-up, so the sub-expression alone has its type within the whole)."""
    offset, scale = np.float32(band.offset), np.float32(band.scale)
    if array.dtype in _NUMPY_DN_TYPES or array.dtype in (np.float32, np.float64):
        wide = np.float32 if array.dtype in _NUMPY_DN_TYPES else array.dtype
        out = array.astype(wide)
        out += offset
        out *= scale
        return out
    try:  # any other type: numexpr itself, so its casting rules hold
        local = {"dn": array, "offset": offset, "scale": scale}
        return numexpr.evaluate("(dn + offset) * scale", local_dict=local)
    except (TypeError, ValueError, KeyError, NotImplementedError) as e:
        raise ExpressionError(f"cannot use digital numbers of type {array.dtype}: {e}") from e


def _mark_invalid_dn(array: np.ndarray, band: DnBand, nodata: np.ndarray) -> None:
    """Set ``nodata`` where a band's DN is one of its invalid values, or NaN."""
    low, high = band.dn_range or (-np.inf, np.inf)
    for value in band.invalid:
        if low <= value <= high:
            nodata |= array == array.dtype.type(value)
    if array.dtype.kind == "f":
        nodata |= np.isnan(array)


def _to_float32(result: np.ndarray, inputs: list[np.ndarray]) -> np.ndarray:
    """Cast to float32 and make NaN every pixel that is nodata or not finite."""
    with np.errstate(all="ignore"):  # float64 -> float32 overflow becomes inf, then NaN
        out = np.asarray(result).astype(np.float32, copy=False)
    if any(np.may_share_memory(out, array) for array in inputs):
        out = out.copy()  # never write NaN into the caller's arrays
    out[~np.isfinite(out)] = np.nan
    # Comparisons and where() can turn NaN inputs into numbers; nodata must stay nodata.
    for array in inputs:
        out[np.broadcast_to(np.isnan(array), out.shape)] = np.nan
    return out


def _check_types(compiled: CompiledExpression) -> None:
    """Dry-run on one pixel so type errors (``where`` on numbers...) surface at compile time."""
    probe = {variable: np.full(1, 0.5, dtype=np.float32) for variable in compiled.variables}
    try:
        numexpr.evaluate(compiled.expression, local_dict=probe)
    except (TypeError, ValueError, KeyError, NotImplementedError, SyntaxError) as e:
        hint = "; & | ~ and where()'s first argument take comparisons, not bands"
        raise ExpressionError(
            f"expression {compiled.text!r} is not valid band math: {e}"
            + (hint if isinstance(e, NotImplementedError) else "")
        ) from e


class _Renderer:
    """Walk an expression tree, refuse what is not allowed, and emit numexpr text."""

    def __init__(self, text: str, names: Mapping[str, str] | None) -> None:
        self.text = text
        self.names = names
        self.used: dict[str, str] = {}

    def render(self, node: ast.expr) -> str:
        """Render one node, recursively."""
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
            return f"({_UNARY_OPS[type(node.op)]}{self.render(node.operand)})"
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
            op = _BINARY_OPS[type(node.op)]
            return f"({self.render(node.left)} {op} {self.render(node.right)})"
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        op = getattr(node, "op", None)
        if type(op) in _REFUSED_OPS:
            logical = isinstance(op, ast.boolop | ast.Not)
            hint = "; combine comparisons with & | ~" if logical else ""
            raise ExpressionError(
                f"operator {_REFUSED_OPS[type(op)]!r} in expression {self.text!r} "
                f"is not allowed{hint}"
            )
        raise self._refuse(node, "is not allowed")

    def _constant(self, node: ast.Constant) -> str:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._refuse(node, "is not a number")
        if not math.isfinite(float(value)):
            raise self._refuse(node, "is not a finite number")
        return repr(float(value))

    def _name(self, name: str) -> str:
        if self.names is not None:
            canonical = self.names.get(name)
            allowed = ", ".join(sorted(self.names)) or "none"
        else:
            canonical = normalize_band(name)
            allowed = _ALLOWED_BANDS_HINT
            if canonical == "SCL":
                raise ExpressionError(
                    f"SCL is a classification, not a reflectance, and cannot be used in "
                    f"expression {self.text!r}; allowed names: {allowed}"
                )
        if canonical is None:
            raise ExpressionError(
                f"unknown name {name!r} in expression {self.text!r}; allowed names: {allowed}"
            )
        if not canonical.isidentifier() or canonical in numexpr.expressions.functions:
            raise ExpressionError(f"name {name!r} maps to unusable variable {canonical!r}")
        self.used[name] = canonical
        return canonical

    def _compare(self, node: ast.Compare) -> str:
        # Chained comparisons (a < b < c) become (a < b) & (b < c), as Python means them.
        operands = [self.render(node.left), *(self.render(c) for c in node.comparators)]
        parts = []
        for i, op in enumerate(node.ops):
            if type(op) not in _COMPARE_OPS:
                symbol = _REFUSED_OPS.get(type(op), type(op).__name__)
                raise ExpressionError(
                    f"comparison {symbol!r} in expression {self.text!r} is not allowed"
                )
            parts.append(f"({operands[i]} {_COMPARE_OPS[type(op)]} {operands[i + 1]})")
        return parts[0] if len(parts) == 1 else "(" + " & ".join(parts) + ")"

    def _call(self, node: ast.Call) -> str:
        if not isinstance(node.func, ast.Name):
            raise self._refuse(node.func, "is not a function that may be called")
        name = node.func.id
        if name not in _FUNCTIONS:
            allowed = ", ".join(sorted(_FUNCTIONS))
            raise ExpressionError(
                f"unknown function {name!r} in expression {self.text!r}; allowed functions: "
                f"{allowed}"
            )
        target, arity = _FUNCTIONS[name]
        if node.keywords or len(node.args) != arity:
            raise self._refuse(node, f"must call {name} with {arity} positional argument(s)")
        args = ", ".join(self.render(arg) for arg in node.args)
        return f"{target}({args})"

    def _refuse(self, node: ast.AST, why: str) -> ExpressionError:
        token = ast.get_source_segment(self.text.strip(), node) or type(node).__name__
        return ExpressionError(f"{token!r} in expression {self.text!r} {why}")
