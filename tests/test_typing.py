"""User programs type-check with plain mypy: no annotation or ``type: ignore`` is needed to use
an untyped proxy (issue 14). Runs mypy on the README's first Python snippet and on every
file in examples/, against this checkout's ``ember`` seen as an installed, typed package."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))




def _first_readme_snippet():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        match = re.search(r"```python\n(.*?)```", f.read(), re.S)
    assert match, "README.md has no python snippet"
    return match.group(1)


def _mypy(tmp_path, files):
    # ember's own modules are followed silently, as for an installed package with py.typed:
    # only errors in the user's files count
    cfg = tmp_path / "mypy.ini"
    cfg.write_text(f"[mypy]\nmypy_path = {os.path.join(ROOT, 'src')}\n\n[mypy-ember.*]\nfollow_imports = silent\n")
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(cfg), "--cache-dir",
                           str(tmp_path / "cache"), "--no-error-summary", *files],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))


def test_readme_snippet_and_examples_pass_plain_mypy(tmp_path):
    snippet = tmp_path / "readme_snippet.py"
    snippet.write_text(_first_readme_snippet())
    examples = sorted(os.path.join(ROOT, "examples", name) for name in os.listdir(os.path.join(ROOT, "examples"))
                      if name.endswith(".py"))
    assert examples
    out = _mypy(tmp_path, [str(snippet), *examples])
    assert out.returncode == 0, out.stdout + out.stderr


def test_untyped_proxy_is_proxy_of_any(tmp_path):
    program = tmp_path / "prog.py"
    program.write_text(
        "import ember\n"
        "class Calc:\n"
        "    def add(self, a: int, b: int) -> int:\n"
        "        return a + b\n"
        "p = ember.Proxy('PYRO:calc@127.0.0.1:1')\n"
        "reveal_type(p)\n"
        "with ember.Proxy('PYRO:calc@127.0.0.1:1') as q:\n"
        "    reveal_type(q)\n"
        "typed: ember.Proxy[Calc] = ember.Proxy('PYRO:calc@127.0.0.1:1')\n"
        "reveal_type(typed)\n"
    )
    out = _mypy(tmp_path, [str(program)])
    assert out.returncode == 0, out.stdout + out.stderr
    reveals = re.findall(r'Revealed type is "([^"]+)"', out.stdout)
    assert reveals == ["ember.client.proxy.Proxy[Any]", "ember.client.proxy.Proxy[Any]",
                       "ember.client.proxy.Proxy[prog.Calc]"]


def test_typed_proxy_checks_calls_against_the_class(tmp_path):
    program = tmp_path / "typed_prog.py"
    program.write_text(
        "import ember\n"
        "class Calc:\n"
        "    def add(self, a: int, b: int) -> int:\n"
        "        return a + b\n"
        "with ember.Proxy('PYRO:calc@127.0.0.1:1') as proxy:\n"
        "    calc = ember.typed(Calc, proxy)\n"
        "    reveal_type(calc.add(1, 2))\n"
        "    calc.add('one', 2)\n"
        "    calc.mul(1, 2)\n"
        "direct = ember.typed(Calc, 'PYRO:calc@127.0.0.1:1')\n"
        "reveal_type(direct)\n"
    )
    out = _mypy(tmp_path, [str(program)])
    reveals = re.findall(r'Revealed type is "([^"]+)"', out.stdout)
    assert reveals in (["int", "typed_prog.Calc"], ["builtins.int", "typed_prog.Calc"]), out.stdout
    assert 'Argument 1 to "add" of "Calc" has incompatible type "str"; expected "int"' in out.stdout
    assert '"Calc" has no attribute "mul"' in out.stdout


def test_typed_returns_the_proxy_itself(make_daemon):
    import ember

    from .services import Calc

    uri = make_daemon().register(Calc, "calc")
    with ember.Proxy(uri) as proxy:
        calc = ember.typed(Calc, proxy)
        assert calc is proxy and calc.add(2, 3) == 5
    made = ember.typed(Calc, uri)
    try:
        assert isinstance(made, ember.Proxy) and made.add(1, 1) == 2
    finally:
        made._release()
    with pytest.raises(TypeError, match="needs a class"):
        ember.typed("Calc", uri)
