"""The public surface: one literal list of names, and the lazy-import table and the eager imports
for type checkers agree with it; ``dir(gradcheck)`` shows only public names."""

from __future__ import annotations

import ast
import importlib
import pathlib
import subprocess
import sys

import gradcheck

INIT = pathlib.Path(gradcheck.__file__)


def _module_tree() -> ast.Module:
    return ast.parse(INIT.read_text())


def _literal(name: str) -> object:
    """The literal assigned to ``name`` at the top level of ``gradcheck/__init__.py``."""
    for node in _module_tree().body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned a literal in {INIT}")


def _type_checking_imports() -> dict[str, str]:
    """Name -> module of every import inside ``if TYPE_CHECKING:``."""
    found: dict[str, str] = {}
    for node in _module_tree().body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for item in ast.walk(node):
                if isinstance(item, ast.ImportFrom):
                    for alias in item.names:
                        home = (
                            item.module if item.module != "gradcheck" else f"gradcheck.{alias.name}"
                        )
                        found[alias.asname or alias.name] = home
    return found


def test_all_is_one_literal_list_and_the_tables_agree_with_it():
    public = _literal("__all__")
    homes = _literal("_HOMES")
    assert isinstance(public, list) and len(public) == len(set(public))
    assert set(public) == set(homes), set(public) ^ set(homes)
    eager = _type_checking_imports()
    assert set(eager) == set(public), set(eager) ^ set(public)
    for name, home in homes.items():
        assert eager[name] == home, f"{name}: lazy table says {home}, eager import {eager[name]}"


def test_every_public_name_resolves_to_its_home_and_matches_the_eager_import():
    for name, home in _literal("_HOMES").items():  # type: ignore[union-attr]
        value = getattr(gradcheck, name)
        module = importlib.import_module(home)
        expected = module if name == "semantics" else getattr(module, name)
        assert value is expected, name


def test_dir_shows_only_public_names():
    names = dir(gradcheck)
    assert set(names) == {*gradcheck.__all__, "__version__"}
    for helper in ("Any", "TYPE_CHECKING", "annotations", "importlib"):
        assert helper not in names


def test_an_unknown_name_raises_attribute_error_naming_it():
    try:
        gradcheck.check_everything  # noqa: B018
    except AttributeError as exc:
        assert "check_everything" in str(exc)
    else:
        raise AssertionError("gradcheck.check_everything did not raise")


def test_importing_gradcheck_imports_no_torch():
    code = "import sys, gradcheck; dir(gradcheck); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
