"""Griffe extension for the API pages: constructor arguments of equinox modules, one style.

* Equinox modules get their ``__init__`` from a dataclass transform that static analysis cannot
  see: for every class of the package without a written ``__init__``, the runtime signature is
  attached as ``__init__`` so the page shows the constructor's arguments.
* Docstrings written in equinox's markdown style (``**Arguments:**`` followed by ``- `name`:``
  bullets) are rewritten to Google-style ``Args:`` sections, so every page renders its
  parameters as the same table.
* Every public class and function gets a parameters table: constructor or call arguments that
  no docstring describes are listed with their type and default.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import griffe

_BULLET = re.compile(r"^- `([^`]+)`(?:\s*,\s*`([^`]+)`)*\s*:\s*(.*)$")
_HEADER = re.compile(r"^\*\*(Arguments|Returns|Raises):?\*\*:?\s*(.*)$")
_SECTION = {"Arguments": "Args", "Returns": "Returns", "Raises": "Raises"}


def _markdown_to_google(text: str) -> str:
    """``**Arguments:**`` + ``- `a`, `b`: text`` bullets -> ``Args:`` + ``a: text`` items.

    Sections written as prose (no bullets) are left as they are."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        head = _HEADER.match(lines[i].strip())
        if not head:
            out.append(lines[i])
            i += 1
            continue
        j = i + 1
        body = []
        while j < len(lines) and not _HEADER.match(lines[j].strip()):
            if lines[j].strip() and not lines[j].startswith(" ") and not lines[j].startswith("-") \
                    and body and not body[-1].strip():
                break  # an unindented paragraph after a blank line ends the section
            body.append(lines[j])
            j += 1
        bullets = [ln for ln in body if re.match(r"^- `", ln.strip())]
        simple = all(re.match(r"^- ((?:`[^`]+`(?:\s*,\s*)?)+)\s*:", b.strip()) for b in bullets)
        if head.group(1) != "Arguments" or not bullets or not simple:
            out.extend(lines[i:j])
            i = j
            continue
        if head.group(2):
            out += [head.group(2), ""]
        out.append("Args:")
        for ln in body:
            stripped = ln.strip()
            bullet = re.match(r"^- ((?:`[^`]+`(?:\s*,\s*)?)+)\s*:\s*(.*)$", stripped)
            if bullet:
                names = re.findall(r"`([^`]+)`", bullet.group(1))
                for name in names:
                    desc = bullet.group(2)
                    if len(names) > 1:
                        desc = f"(with {', '.join(n for n in names if n != name)}) {desc}"
                    out.append(f"    {name.lstrip('*')}: {desc}")
            elif stripped:
                out.append(f"        {stripped}")
            # blank lines are dropped: griffe's Google parser ends an ``Args:`` section at a
            # blank line, so one right after ``**Arguments:**`` left every item as a raw block
        out.append("")
        i = j
    return "\n".join(out)


def _documented(docstring: griffe.Docstring | None) -> set[str]:
    if docstring is None:
        return set()
    names: set[str] = set()
    in_args = False
    for line in docstring.value.splitlines():
        if re.match(r"^(Args|Arguments|Parameters):\s*$", line.strip()):
            in_args = True
            continue
        if in_args:
            m = re.match(r"^\s{2,8}\**([A-Za-z_][A-Za-z0-9_]*)(\s*\([^)]*\))?:", line)
            if m:
                names.add(m.group(1))
            elif line.strip() and not line.startswith(" "):
                in_args = False
    return names


def _append_args(obj: griffe.Object, params: list[inspect.Parameter]) -> None:
    """Add the undocumented parameters to the docstring's Args section (creating it)."""
    if obj.docstring is None:
        return
    missing = [p for p in params if p.name not in _documented(obj.docstring)]
    if not missing:
        return
    lines = []
    for p in missing:
        keyword_only = p.kind is inspect.Parameter.KEYWORD_ONLY
        kind = "keyword-only" if keyword_only else "positional or keyword"
        lines.append(f"    {p.name}: {kind}")
    value = obj.docstring.value.rstrip()
    if re.search(r"^Args:\s*$", value, re.M):
        value = re.sub(
            r"^(Args:\s*\n(?:(?:    .*)?\n)*)",
            lambda m: m.group(1).rstrip("\n") + "\n" + "\n".join(lines) + "\n",
            value + "\n",
            count=1,
            flags=re.M,
        ).rstrip()
    else:
        value += "\n\nArgs:\n" + "\n".join(lines)
    obj.docstring.value = value


def _runtime(path: str):
    try:
        return griffe.dynamic_import(path)
    except Exception:  # noqa: BLE001 - documentation only: leave the object as it is
        return None


def _params_of(func) -> list[inspect.Parameter]:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    return [p for p in sig.parameters.values() if p.name not in ("self", "cls")
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]


def _griffe_params(params: list[inspect.Parameter]) -> griffe.Parameters:
    kinds = {
        inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
        inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
        inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    }
    out = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
    for p in params:
        ann = None
        if p.annotation is not inspect.Parameter.empty:
            ann = p.annotation
            if not isinstance(ann, str):
                ann = inspect.formatannotation(ann)
        default = None if p.default is inspect.Parameter.empty else repr(p.default)
        out.append(griffe.Parameter(p.name, annotation=ann, kind=kinds[p.kind], default=default))
    return griffe.Parameters(*out)


class SdekitApi(griffe.Extension):
    """See the module docstring."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.name != "sdekit":
            return
        self._walk(pkg)

    def _walk(self, mod: griffe.Module) -> None:
        for member in list(mod.members.values()):
            if member.is_alias:
                continue
            if member.is_module:
                self._walk(member)
            elif member.is_class:
                self._class(member)
            elif member.is_function:
                self._function(member)

    def _function(self, fn: griffe.Function) -> None:
        if fn.docstring is not None:
            fn.docstring.value = _markdown_to_google(fn.docstring.value)
        runtime = _runtime(fn.path)
        if runtime is not None and not fn.name.startswith("_"):
            _append_args(fn, _params_of(runtime))

    def _class(self, cls: griffe.Class) -> None:
        for name in ("__init__", "__call__"):
            member = cls.members.get(name)
            if member is not None and not member.is_alias and member.docstring is not None:
                member.docstring.value = _markdown_to_google(member.docstring.value)
        if cls.docstring is not None:
            cls.docstring.value = _markdown_to_google(cls.docstring.value)
        for member in list(cls.members.values()):
            if not member.is_alias and member.is_function and member.docstring is not None:
                member.docstring.value = _markdown_to_google(member.docstring.value)
        if cls.name.startswith("_"):
            return
        runtime = _runtime(cls.path)
        if not inspect.isclass(runtime):
            return
        params = _params_of(runtime.__init__)
        if "__init__" not in cls.members and (dataclasses.is_dataclass(runtime) or params):
            init = griffe.Function("__init__", parent=cls, parameters=_griffe_params(params))
            cls.set_member("__init__", init)
        target = cls.members.get("__init__")
        doc_holder = cls
        if target is not None and not target.is_alias and target.docstring is not None:
            doc_holder = target
        if cls.docstring is None and doc_holder is cls:
            cls.docstring = griffe.Docstring("", parent=cls)
        _append_args(doc_holder, params)
