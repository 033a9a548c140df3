"""The Jinja2 environments templates render in.

Template sources come from clients and product teams, so they are untrusted code:

* `ImmutableSandboxedEnvironment` blocks attribute access to internals (`__class__`,
  `__globals__` …), unsafe callables, and mutating lists/dicts/sets.
* `StrictUndefined`: a missing variable is an error, never a blank.
* Size guards: operations that can blow up memory from a short source (`'x' * 10**9`,
  `'%999999999d' % 1`, `'x'|center(10**9)`, `sep.join(big)`, namespace doubling in a loop)
  are refused up front, and a rendered part is cut off at `MAX_OUTPUT_CHARS`.
* No loader: `include`/`extends`/`import`/`macro` are refused when a version is created
  (`unsupported_tags`), and `lipsum` is removed from the globals.

What the sandbox does NOT bound is CPU time (`{% for a in range(100000) %}{% for b in
range(100000) %}{% endfor %}{% endfor %}`): the dispatch task's time limit is the backstop.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable
from typing import Any

from jinja2 import StrictUndefined, nodes, pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.filters import do_center, do_format, do_indent, do_join, do_replace
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

MAX_OUTPUT_CHARS = 1_000_000  # one rendered part (an HTML email is rarely above 100 kB)
MAX_VALUE_SIZE = 200_000  # one string/list built inside a template (characters/items)
MAX_WIDTH = 1_000  # padding width / precision in format specs and center/indent/ljust …

UNSUPPORTED_TAGS: dict[type[nodes.Node], str] = {
    nodes.Include: "include",
    nodes.Extends: "extends",
    nodes.Import: "import",
    nodes.FromImport: "from … import",
    nodes.Macro: "macro",
    nodes.CallBlock: "call",
}


def _size(value: Any, budget: int = MAX_VALUE_SIZE) -> int:
    """The characters/items `value` stands for, counting nested lists (a list of references to
    one big string is as big as all the copies). Stops counting once past `budget`."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, list | tuple):
        total = len(value)
        for item in value:
            if total > budget:
                break
            total += _size(item, budget - total)
        return total
    if isinstance(value, dict):
        total = len(value)
        for key, item in value.items():
            if total > budget:
                break
            total += _size(key, budget - total) + _size(item, budget - total)
        return total
    return 1


def _check_size(value: Any, what: str) -> Any:
    if _size(value) > MAX_VALUE_SIZE:
        raise SecurityError(f"{what} would be larger than {MAX_VALUE_SIZE} characters/items.")
    return value


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


def _check_percent_format(fmt: str) -> None:
    for width, precision in _PERCENT_SPEC.findall(fmt):
        for number in (width, precision):
            if number == "*" or (number and int(number) > MAX_WIDTH):
                raise SecurityError(f"Format widths above {MAX_WIDTH} are not allowed.")


def _check_brace_format(fmt: str) -> None:
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format will raise its own error
    for _literal, _name, spec, _conversion in fields:
        if not spec:
            continue
        if "{" in spec or any(int(n) > MAX_WIDTH for n in _DIGITS.findall(spec)):
            raise SecurityError(f"Format widths above {MAX_WIDTH} are not allowed.")


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_WIDTH:
        raise SecurityError(f"Widths above {MAX_WIDTH} are not allowed.")


class BoundedNamespace(Namespace):
    """`namespace()` whose attributes stay under the size limit (so `{% set ns.s = ns.s ~ ns.s %}`
    in a loop cannot double a string 60 times)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for name, value in dict(*args, **kwargs).items():
            _check_size(value, f"namespace attribute {name}")
        super().__init__(*args, **kwargs)

    def __setitem__(self, name: str, value: Any) -> None:
        _check_size(value, f"namespace attribute {name}")
        super().__setitem__(name, value)


def _guarded_center(value: str, width: int = 80) -> str:
    _check_width(width)
    return do_center(value, width)


def _guarded_indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    _check_width(width)
    if isinstance(width, str):
        _check_size(width * max(str(s).count("\n") + 1, 1), "indent")
    return do_indent(s, width, first, blank)


def _guarded_format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_percent_format(str(value))
    return do_format(value, *args, **kwargs)


def _check_join(separator: Any, items: list[Any]) -> None:
    total = len(str(separator)) * max(len(items) - 1, 0) + _size(items)
    if total > MAX_VALUE_SIZE:
        raise SecurityError(f"join would be larger than {MAX_VALUE_SIZE} characters.")


def _check_replace(s: Any, old: Any, new: Any, count: int | None = None) -> None:
    text, old_s, new_s = str(s), str(old), str(new)
    occurrences = len(text) + 1 if not old_s else text.count(old_s)
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    growth = occurrences * max(len(new_s) - len(old_s), 0)
    if len(text) + growth > MAX_VALUE_SIZE:
        raise SecurityError(f"replace would be larger than {MAX_VALUE_SIZE} characters.")


@pass_eval_context
def _guarded_join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value)
    _check_join(d, items)
    return do_join(eval_ctx, items, d, attribute)


@pass_eval_context
def _guarded_replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    _check_replace(s, old, new, count)
    return do_replace(eval_ctx, s, old, new, count)


def _check_repetition(seq: Any, times: Any) -> None:
    if not (isinstance(seq, str | list | tuple) and isinstance(times, int) and times > 1):
        return
    if _size(seq, MAX_VALUE_SIZE // times + 1) * times > MAX_VALUE_SIZE:
        raise SecurityError(f"repetition would be larger than {MAX_VALUE_SIZE} characters/items.")


def _check_power(base: Any, exponent: Any) -> None:
    if not (isinstance(exponent, int) and isinstance(base, int | float) and abs(base) > 1):
        return
    bits = abs(exponent) * int(abs(base)).bit_length()
    if abs(exponent) > 10_000 or (isinstance(base, int) and bits > 10_000):
        raise SecurityError("exponent too large.")


# str methods that build a string from a width or a count: checked before they run.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


class NotifyHubSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=autoescape)
        self.globals.pop("lipsum", None)
        self.globals["namespace"] = BoundedNamespace
        self.filters.update(center=_guarded_center, indent=_guarded_indent,
                            format=_guarded_format, join=_guarded_join, replace=_guarded_replace)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repetition(left, right)
            _check_repetition(right, left)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        elif (operator == "+" and isinstance(left, str | list | tuple) and type(left) is type(right)
              and _size(left) + _size(right) > MAX_VALUE_SIZE):
            raise SecurityError(f"result would be larger than {MAX_VALUE_SIZE} characters/items.")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map"):
            _check_brace_format(owner)
        return super().wrap_str_format(value)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            if name in _WIDTH_METHODS and args:
                _check_width(args[0])
            elif name == "join" and args:
                items = list(args[0])
                _check_join(owner, items)
                args = (items, *args[1:])
            elif name == "replace" and len(args) >= 2:
                _check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else None)
        return super().call(__context, __obj, *args, **kwargs)


text_env = NotifyHubSandbox(autoescape=False)
html_env = NotifyHubSandbox(autoescape=True)


def unsupported_tags(source_ast: nodes.Template) -> list[str]:
    """Tags a version may not use (they need a loader, or allow unbounded recursion)."""
    found = {label for node_type, label in UNSUPPORTED_TAGS.items()
             if any(True for _ in source_ast.find_all(node_type))}
    return sorted(found)


def unknown_names(source_ast: nodes.Template, env: NotifyHubSandbox) -> list[str]:
    """Filters and tests the source uses that do not exist. Jinja defers some of these to
    render time (inside `{% if %}`); a version must not fail only when a branch is taken."""
    missing = {f"No filter named '{node.name}'" for node in source_ast.find_all(nodes.Filter)
               if node.name not in env.filters}
    missing |= {f"No test named '{node.name}'" for node in source_ast.find_all(nodes.Test)
                if node.name not in env.tests}
    return sorted(missing)


# --- What can never render, found when a version is created -----------------------------------
#
# The sandbox refuses these at render time (SecurityError → `render_error` on every delivery);
# refusing them when the version is created (422 `template_unsafe`) means a template that can
# never render is never published. Only what fails whatever the variables are is refused:
# `x._id` stays legal (on a JSON object it reads the key `_id`), `x.__class__` does not.

# Methods the immutable sandbox never lets a template call (they modify a list, dict or set;
# the values a template sees are JSON data and Jinja's own helpers, where no other object has
# them).
MUTATING_METHODS = frozenset({
    "append", "extend", "insert", "pop", "popitem", "remove", "reverse", "sort", "clear",
    "update", "setdefault", "add", "discard", "difference_update", "intersection_update",
    "symmetric_difference_update", "appendleft", "extendleft", "popleft", "rotate",
})
# Names that are never JSON data: Jinja's own objects, where even `_x` is a real attribute.
_JINJA_OBJECTS = frozenset({"self", "loop", "super", "caller", "varargs", "kwargs"})
# A str.format field reaching for a dunder: '{0.__class__}', '{0[__globals__]}'.
_FORMAT_DUNDER = re.compile(r"\{[^{}]*(?:\.|\[)__")


def _is_jinja_object(node: nodes.Node, env: NotifyHubSandbox) -> bool:
    if isinstance(node, nodes.Name):
        return node.name in _JINJA_OBJECTS or node.name in env.globals
    return isinstance(node, nodes.Const | nodes.List | nodes.Tuple | nodes.Dict)


def unsafe_access(source_ast: nodes.Template, env: NotifyHubSandbox) -> list[str]:
    """Why the source can never render in the sandbox (empty: nothing found)."""
    found: set[str] = set()
    for node in source_ast.find_all(nodes.Getattr):
        dunder = node.attr.startswith("__")
        if dunder or (node.attr.startswith("_") and _is_jinja_object(node.node, env)):
            found.add(f"line {node.lineno}: attribute '{node.attr}' is not allowed")
    for item in source_ast.find_all(nodes.Getitem):
        if isinstance(item.arg, nodes.Const) and str(item.arg.value).startswith("__"):
            found.add(f"line {item.lineno}: item '{item.arg.value}' is not allowed")
    for flt in source_ast.find_all(nodes.Filter):
        if flt.name == "attr" and flt.args and isinstance(flt.args[0], nodes.Const) \
                and str(flt.args[0].value).startswith("__"):
            found.add(f"line {flt.lineno}: attribute '{flt.args[0].value}' is not allowed")
    for call in source_ast.find_all(nodes.Call):
        if isinstance(call.node, nodes.Getattr) and call.node.attr in MUTATING_METHODS:
            found.add(f"line {call.lineno}: '{call.node.attr}()' cannot be called (templates "
                      "cannot change their data)")
    for const in source_ast.find_all(nodes.Const):
        if isinstance(const.value, str) and _FORMAT_DUNDER.search(const.value):
            found.add(f"line {const.lineno}: a format field may not reach for '__' attributes")
    return sorted(found)
