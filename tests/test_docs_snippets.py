"""Every ```python block of README.md and docs/*.md runs as written (issue 14.17).

A page's blocks run in sequence in one fresh interpreter, as a reader would run them one
after another (a later block may use what an earlier one defined), with a timeout, on
loopback only: broadcasts go to 127.255.255.255, and a name server started here is found
through ``PYRO_NS_HOST``/``PYRO_NS_PORT`` (as a reader's ``ember ns`` would be). The
working directory holds the certificate files the TLS examples load (``ca.pem``,
``server.pem``/``server.key`` for 127.0.0.1, ``client.pem``/``client.key``).

A block whose first line is ``# not run: <reason>`` is skipped; keep those rare and real.
Shell commands are ```sh blocks, never ```python.
"""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

import ember
from ember import naming

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)
OPT_OUT = "# not run:"
TIMEOUT = 60


def blocks(page: Path) -> list[tuple[int, str, str]]:
    """(line, language, code) of every fenced block of a page."""
    text = page.read_text()
    return [(text[: m.start()].count("\n") + 1, m["lang"].strip(), m["body"]) for m in FENCE.finditer(text)]


def python_blocks(page: Path) -> list[tuple[int, str]]:
    return [(line, code) for line, lang, code in blocks(page) if lang == "python"]


def script(page: Path) -> str:
    """The page's python blocks, opt-outs left out, each marked with its line in the page."""
    parts = []
    for line, code in python_blocks(page):
        if code.lstrip().startswith(OPT_OUT):
            continue
        parts.append(f"# ---- {page.name}, line {line}\n{code}")
    return "\n".join(parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nameserver():
    """A name server of the page's own (so pages do not see each other's names)."""
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as service:
        yield service


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory with the files the examples open: a CA and certificates signed by it."""
    path = tmp_path_factory.mktemp("docs")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(path / "ca.pem"))
    for name, cert in (("server", ca.issue_cert("127.0.0.1", "localhost")),
                       ("client", ca.issue_cert("client.example"))):
        cert.cert_chain_pems[0].write_to_path(str(path / f"{name}.pem"))
        cert.private_key_pem.write_to_path(str(path / f"{name}.key"))
    return path


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_of_the_page_run(page, nameserver, workdir):
    env = dict(os.environ, PYRO_BROADCAST_ADDRS="127.255.255.255", PYRO_NS_HOST="127.0.0.1",
               PYRO_NS_PORT=str(nameserver.daemon.port), PYRO_NS_BCPORT=str(free_port()))
    env.pop("PYRO_LOGLEVEL", None)
    # this ember, whatever the working directory (a relative PYTHONPATH would not do)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(ember.__file__).resolve().parents[1]),
                                                      env.get("PYTHONPATH")]))
    code = script(page)
    ran = workdir / "ran"  # what ran, for a look after a failure (not in the cwd: asyncio.py would shadow asyncio)
    ran.mkdir(exist_ok=True)
    (ran / f"{page.stem}.py").write_text(code)
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{page.name}: its python blocks did not finish in {TIMEOUT} s (a server left in the "
                    f"foreground?)\n{exc.stdout}\n{exc.stderr}")
    assert proc.returncode == 0, f"{page.name}:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


def test_opt_outs_give_a_reason_and_stay_rare():
    opted = [(page.name, line, code.splitlines()[0]) for page in PAGES for line, code in python_blocks(page)
             if code.lstrip().startswith(OPT_OUT)]
    for _page, _line, first in opted:
        assert len(first[len(OPT_OUT):].strip()) >= 10, f"an opt-out needs a reason: {first!r}"
    assert len(opted) <= 3, opted


def test_no_python_hides_in_other_blocks():
    # a block without a language, or marked py/python3, would escape the check above
    for page in PAGES:
        for line, lang, code in blocks(page):
            assert lang not in ("py", "python3", "pycon", "Python"), f"{page.name}:{line}: mark it ```python"
            if lang == "":
                assert not re.search(r"^(import |from \S+ import |def |class |@ember\.)", code, re.M), \
                    f"{page.name}:{line} looks like Python: mark it ```python (or ```text)"
