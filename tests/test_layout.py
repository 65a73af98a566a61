"""The package layout as a user meets it: the public API, the one CLI, and the rules the tree keeps (no module uses
another's private names, each rule's constants in one place)."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import levitor
from levitor.cli import COMMAND_MODULES, build_parser

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "levitor").rglob("*.py")) + sorted((REPO / "levitor_widgets").rglob("*.py"))


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_import_levitor_is_light_and_gives_the_readme_names():
    code = ("import sys, levitor; heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
            "print(heavy); print(sorted(n for n in levitor.__all__ if not n.startswith('_')))")
    out = _run("-c", code).stdout.splitlines()
    assert out[0] == "[]"  # nothing heavy until a name is used
    for name in ("Scene", "ObjectTrack", "PathPoint", "Engine", "encode", "bundled_scene", "LeviTorPipeline",
                 "generate"):
        assert name in out[1]
    assert levitor.Engine is importlib.import_module("levitor.engine").Engine
    assert levitor.encode is importlib.import_module("levitor.control.encode").encode


def test_levitor_help_lists_every_command_and_each_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    names = sorted(sub.choices)
    assert names == sorted(["demo", "preview", "generate", "vram", "studio", "train", "precompute",
                            "precompute-synthetic", "eval"])
    listed = {a.dest for a in sub._choices_actions}
    assert listed == set(names) and all(a.help for a in sub._choices_actions)
    for name in names:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([name, "--help"])
        assert done.value.code == 0


def test_python_dash_m_levitor_is_the_levitor_command():
    res = _run("-m", "levitor", "--help")
    assert res.returncode == 0 and all(c in res.stdout for c in ("demo", "generate", "studio", "train", "eval"))
    res = _run("-m", "levitor", "preview", "/no/such/scene.json")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "does not exist" in res.stderr


def test_command_modules_import_nothing_heavy():
    code = (f"import sys, importlib; [importlib.import_module(m) for m in {COMMAND_MODULES!r}]; "
            "print([m for m in ('torch', 'diffusers', 'ipywidgets') if m in sys.modules])")
    assert _run("-c", code).stdout.strip() == "[]"


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(("levitor", "levitor_widgets")):
            for alias in node.names:
                yield node.module, alias.name


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in SOURCES:
        for module, name in _imports(path):
            private_module = any(part.startswith("_") and part != "_util" for part in module.split("."))
            dunder = name.startswith("__") and name.endswith("__")
            own_package = path.name == "__init__.py" and module == path.parent.name  # a package's own parts
            if (name.startswith("_") and not dunder and not own_package) or private_module:
                offenders.append(f"{path.relative_to(REPO)}: from {module} import {name}")
    assert offenders == []


def _code_lines(path: Path) -> list[str]:
    """The file's lines with strings and comments blanked (docstring examples are not rules)."""
    import io
    import tokenize

    lines = path.read_text().splitlines()
    out = [list(line) for line in lines]
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.STRING, tokenize.COMMENT) or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                row = out[r - 1]
                a, b = (c0 if r == r0 else 0), (c1 if r == r1 else len(row))
                row[a:b] = " " * (b - a)
    return ["".join(r) for r in out]


def _string_values(path: Path) -> list[str]:
    """The string constants of a file's code (f-string parts included), docstrings left out."""
    tree = ast.parse(path.read_text())
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_each_rule_has_one_owner():
    """The K rule's numbers, the default size, the release seed and focal, the SVD id and the preset names
    appear as literals in their owning module only."""
    rules = {
        r"\b(lam|LAMBDA)\b\s*[:=][^=\n]*\b50(\.0)?\b": "levitor/control/krule.py",
        r"\b(k_max|K_MAX)\b\s*[:=][^=\n]*\b8\b": "levitor/control/krule.py",
        r"\b320\b[^\n]*\b512\b": "levitor/defaults.py",
        r"\b217113\b": "levitor/defaults.py",
        r"3866\.378": "levitor/defaults.py",
        r"hashlib\.": "levitor/_util/hashing.py",
        r"os\.replace\(": "levitor/_util/io.py",
        r"torch\.cuda\.is_available\(\) else": "levitor/_util/device.py",
    }
    for pattern, owner in rules.items():
        where = []
        for path in SOURCES:
            if any(re.search(pattern, code) for code in _code_lines(path)):
                where.append(str(path.relative_to(REPO)))
        assert set(where) <= ({owner} if owner else set()), (pattern, sorted(set(where)))
    # string-valued rules: the ids are spelled out only where every model is described
    for literal, owner in (("stabilityai/stable-video-diffusion-img2vid-xt", "levitor/weights.py"),
                           ("hlwang06/LeviTor", "levitor/weights.py"), ("rgb({", "levitor/viz/colors.py"),
                           ("low_vram", "levitor/generation/presets.py")):
        where = {str(p.relative_to(REPO)) for p in SOURCES if any(literal in v for v in _string_values(p))}
        assert where <= {owner}, (literal, sorted(where))


# ------------------------------------------------------------------------------ one owner for every number
STRUCTURAL = {0, 1, 2, -1}  # identities, halving and doubling, "none" markers: structure, not rules
# A name's last word says what the number is (steps, fps, stride, radius ...); these words say too little alone,
# so the word before them counts too (patch_size and batch_size are different rules, checkpoint_every and
# sample_every too, and a thread pool's max_workers and the DataLoader's num_workers).
GENERIC_WORDS = {"size", "every", "id", "s", "dim", "channels", "max", "min", "workers"}


@dataclass(frozen=True)
class NumberDefinition:
    key: str       # what the number is: the name's last word (two for a generic one), lower case
    value: float
    name: str
    file: str
    line: int
    kind: str      # constant | field | default | cli default


def rule_key(name: str) -> str:
    words = name.lower().strip("_").split("_")
    return "_".join(words[-2:]) if words[-1] in GENERIC_WORDS and len(words) > 1 else words[-1]


def _number(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _number(node.operand)
        return None if inner is None else -inner
    return None


def _bindings(tree: ast.Module):
    """(name, value node, kind) of every name a module binds to an expression that may be a number."""
    def assignments(body: list[ast.stmt], kind: str):
        for st in body:
            if isinstance(st, ast.Assign):
                yield from ((t.id, st.value, kind) for t in st.targets if isinstance(t, ast.Name))
            elif isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
                yield st.target.id, st.value, kind

    yield from assignments(tree.body, "constant")
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            yield from assignments(node.body, "field")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            positional = a.posonlyargs + a.args
            yield from ((arg.arg, d, "default") for arg, d in zip(positional[len(positional) - len(a.defaults):],
                                                                  a.defaults))
            yield from ((arg.arg, d, "default") for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            flag = next((x.value for x in node.args if isinstance(x, ast.Constant) and isinstance(x.value, str)), None)
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
            if flag and default is not None:
                yield flag.lstrip("-").replace("-", "_"), default, "cli default"


def numeric_definitions(source: str, file: str) -> list[NumberDefinition]:
    """Every number a module binds to a name: module constants, class fields (dataclass defaults), default
    arguments of functions and argparse ``default=`` values; structural numbers left out."""
    out = []
    for name, node, kind in _bindings(ast.parse(source)):
        value = _number(node)
        if value is not None and value not in STRUCTURAL:
            out.append(NumberDefinition(rule_key(name), float(value), name, file, node.lineno, kind))
    return out


def rules_defined_twice(definitions: list[NumberDefinition]) -> dict[tuple[str, float], list[str]]:
    groups: dict[tuple[str, float], list[NumberDefinition]] = {}
    for d in definitions:
        groups.setdefault((d.key, d.value), []).append(d)
    return {k: [f"{d.file}:{d.line} {d.name}" for d in v] for k, v in sorted(groups.items()) if len(v) > 1}


# The justified exceptions: numbers whose repetition is the convention, not a copy.
OWNER_EXCEPTIONS = {
    # diffusers' ModelMixin manners (STYLE 8): every architectural knob is an __init__ argument with the base
    # model's value, so a saved config.json stands alone; the ControlNet mirrors the UNet it attaches to
    ("levitor/models/", "default"),
    # test fixtures (tiny models, tiny data sets): each size is that fixture's choice, not a rule of levitor's
    ("levitor/testing/", "constant"), ("levitor/testing/", "field"), ("levitor/testing/", "default"),
}

# Phase 2: second definitions in files being edited on other branches, by (file, name), with what their owner
# does. The test fails when one is fixed and still listed, so the list only shrinks.
PENDING_OWNERS = {
}


def test_the_owner_check_finds_a_rule_defined_twice():
    source = ("from dataclasses import dataclass\nSTEPS = 25\nHALF = 2\n\n"
              "def run(num_inference_steps: int = 25, radius: int = 25, scale=-1): ...\n\n"
              "@dataclass\nclass C:\n    sample_steps: int = 25\n    batch_size: int = 4\n    patch_size: int = 4\n\n"
              "p.add_argument('--steps', type=int, default=25)\n")
    found = rules_defined_twice(numeric_definitions(source, "m.py"))
    assert found == {("steps", 25.0): ["m.py:2 STEPS", "m.py:5 num_inference_steps", "m.py:9 sample_steps",
                                       "m.py:13 steps"]}


def test_no_numeric_rule_is_defined_twice():
    """Each default and constant of levitor and the Studio is defined in one module (the others import it): found
    by walking the syntax tree of every module, so a new copy anywhere fails here."""
    definitions = [d for path in SOURCES
                   for d in numeric_definitions(path.read_text(), str(path.relative_to(REPO)))]
    assert len(definitions) > 150  # the walk sees the whole tree (213 when this was written)
    pending = {(d.file, d.name) for d in definitions} & set(PENDING_OWNERS)
    assert pending == set(PENDING_OWNERS), sorted(set(PENDING_OWNERS) - pending)  # fixed: take it off the list
    checked = [d for d in definitions if (d.file, d.name) not in PENDING_OWNERS
               and not any(d.file.startswith(where) and d.kind == kind for where, kind in OWNER_EXCEPTIONS)]
    assert rules_defined_twice(checked) == {}


# ------------------------------------------------------------------------------------------- the import graph
def module_names(root: Path, packages: tuple[str, ...] = ("levitor", "levitor_widgets")) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``packages`` under ``root``."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def import_graph(root: Path = REPO, packages: tuple[str, ...] = ("levitor", "levitor_widgets")
                 ) -> dict[str, dict[str, int]]:
    """module -> {project module it imports: line}, from every import statement of the file: at the top, in
    function bodies and in conditional blocks alike (an import in a function is still a dependency)."""
    modules = module_names(root, packages)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..a import b
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # a name inside a module -> the module
                    target = target.rpartition(".")[0]
                if target:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected groups of modules (Tarjan), each sorted; a module importing itself is one too."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1 or v in graph.get(v, {}):
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_import_graph_counts_imports_in_function_bodies(tmp_path):
    """The check itself: a cycle closed only by an import inside a function, and a self-import, are found."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import run\n")
    (tmp_path / "pkg" / "b.py").write_text("def run():\n    from pkg import a\n    return a\n")
    (tmp_path / "pkg" / "c.py").write_text("if __name__ == '__main__':\n    from pkg import c\n")
    (tmp_path / "pkg" / "d.py").write_text("from . import a\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.b"] == {"pkg.a": 2} and graph["pkg.d"] == {"pkg.a": 1}
    assert import_cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.c"]]


# Known cycles in files being edited on other branches (phase 2 removes them): none left.
PENDING_CYCLES: list[list[str]] = []


def test_no_import_cycles_counting_imports_inside_functions():
    """Layers call downwards: a command calls into its layer, never the reverse; an import hidden in a function
    body is still an edge (that is how the cycles this replaced were hidden)."""
    assert import_cycles(import_graph()) == PENDING_CYCLES


def test_production_code_never_imports_the_test_helpers():
    """levitor.testing (tiny random models, fixtures) is for tests, notebooks and benchmarks; what production needs
    from it (SVD-xt's configuration and scheduler) lives in levitor.generation.svd_config."""
    importers = {module for module, deps in import_graph().items()
                 if not module.startswith("levitor.testing") and any(d.startswith("levitor.testing") for d in deps)}
    assert importers == set()


def test_ls_levitor_shows_the_layers():
    names = {p.name for p in (REPO / "levitor").iterdir() if not p.name.startswith((".", "__pycache__"))}
    for layer in ("perception", "scene.py", "motion", "control", "engine.py", "generation", "models", "data",
                  "training", "evaluation", "viz", "weights.py", "cli.py"):
        assert layer in names
    modules = [n for n in names if n.endswith(".py") and not n.startswith("_")]
    assert len(modules) <= 9, sorted(modules)  # the rest lives in the layers


# ------------------------------------------------------------------------------------------ no unsafe loads
# Loads that can run code from the file they read. A folder levitor reads may be shared (cluster scratch, a
# downloaded checkpoint), so none of these may appear in the package, the benchmarks, scripts or notebooks.
_PICKLE_MODULES = ("pickle", "_pickle", "cPickle", "dill", "cloudpickle")
_ALWAYS_UNSAFE = {f"{m}.{f}" for m in _PICKLE_MODULES for f in ("load", "loads", "Unpickler")} | {
    "marshal.load", "marshal.loads", "shelve.open", "joblib.load", "pandas.read_pickle", "yaml.unsafe_load",
    "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all"}
_SAFE_YAML_LOADERS = ("SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader")


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted origin, from the file's imports (``import numpy as np``, ``from pickle import loads``)."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([aliases.get(node.id, node.id), *reversed(parts)])


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def unsafe_loads(source: str) -> list[str]:
    """The calls in ``source`` that may unpickle (or otherwise run) code from what they read, as 'line: name'."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        if name is None:
            continue
        name = name.replace("numpy.lib.npyio.", "numpy.")
        if name in _ALWAYS_UNSAFE:
            why = name
        elif name == "numpy.load":
            flag = _keyword(node, "allow_pickle")
            why = None if flag is None or (isinstance(flag, ast.Constant) and flag.value is False) else \
                "numpy.load(allow_pickle=...)"
        elif name == "torch.load":
            flag = _keyword(node, "weights_only")
            safe = isinstance(flag, ast.Constant) and flag.value is True
            why = None if safe else "torch.load without weights_only=True"
        elif name in ("yaml.load", "yaml.load_all"):
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            loader_name = _dotted(loader, aliases) if loader is not None else None
            why = None if loader_name and loader_name.split(".")[-1] in _SAFE_YAML_LOADERS else \
                f"{name} without a safe Loader (use yaml.safe_load)"
        elif name.endswith(".register_for_checkpointing"):
            why = "accelerate's register_for_checkpointing (its load_state unpickles)"
        else:
            why = None
        if why:
            bad.append(f"{node.lineno}: {why}")
    return bad


def _python_sources() -> dict[str, str]:
    """Every Python source the project ships or runs: .py files and the code cells of notebooks."""
    import json

    out = {}
    for d in ("levitor", "levitor_widgets", "bench", "scripts"):
        for p in sorted((REPO / d).rglob("*.py")):
            out[str(p.relative_to(REPO))] = p.read_text()
    for p in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(p.read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        lines = [ln for cell in code for ln in cell.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        out[str(p.relative_to(REPO))] = "\n".join(lines)
    return out


@pytest.mark.parametrize("snippet", [
    "import pickle\npickle.loads(b'')", "import pickle as pk\npk.load(open('f', 'rb'))",
    "from pickle import Unpickler\nUnpickler(f).load()", "from pickle import loads as l\nl(data)",
    "import numpy as np\nnp.load('a.npy', allow_pickle=True)", "import numpy\nnumpy.load(p, allow_pickle=flag)",
    "import torch\ntorch.load('x.pt')", "import torch\ntorch.load('x.pt', weights_only=False)",
    "import yaml\nyaml.load(text)", "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "import yaml\nyaml.full_load(t)",
    "import dill\ndill.loads(b)", "import pandas as pd\npd.read_pickle('x')",
    "acc.register_for_checkpointing(obj)"])
def test_the_unsafe_load_check_finds(snippet):
    assert unsafe_loads(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "import pickle\npickle.dumps(x)", "import numpy as np\nnp.load(p)",
    "import numpy as np\nnp.load(p, allow_pickle=False)",
    "import torch\ntorch.load(p, map_location='cpu', weights_only=True)", "import yaml\nyaml.safe_load(t)",
    "import yaml\nyaml.load(t, Loader=yaml.SafeLoader)", "loads(x)", "import json\njson.loads(s)"])
def test_the_unsafe_load_check_passes(snippet):
    assert unsafe_loads(snippet) == [], snippet


def test_no_unsafe_loads_anywhere():
    """No pickle load (pickle, dill, cloudpickle, marshal, joblib, shelve, pandas.read_pickle), no numpy.load that
    allows pickles, no torch.load without weights_only=True, no yaml.load without a safe Loader, no accelerate
    register_for_checkpointing: in the package, benchmarks, scripts or notebooks (parsed, not grepped)."""
    sources = _python_sources()
    assert len(sources) > 100 and any(k.endswith(".ipynb") for k in sources)
    bad = [f"{path}:{hit}" for path, text in sources.items() for hit in unsafe_loads(text)]
    assert bad == []
