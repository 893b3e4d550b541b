"""What symbptt writes, and only what it may: ownership, names, permissions, stdout trouble.

Expected values are computed here from the documented rules (sha256 of the file without its
checksum line, the umask, Python's own keyword and stdlib lists), not by symbptt's code.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import derivation

from symbptt import CodegenError, SpecError, cli, fileio
from symbptt.cli import main

CHECKSUM_PREFIX = "sha256 of this file without this line: "


def run_cli(*args: str, cwd: Path, **options) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="100", **options.pop("env", {}))
    options.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-m", "symbptt", *args],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
        **options,
    )


def one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and stderr.startswith("symbptt: "), stderr
    assert "Traceback" not in stderr
    return stderr


# --- 1. writing files does not depend on stdout ---------------------------------------------


def test_derive_into_a_pipe_closed_early_still_writes_everything(tmp_path):
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)  # the child blocks until we have read
    child = subprocess.Popen(
        [sys.executable, "-m", "symbptt", "derive", "--steps", "8", "--latex", "doc.tex"],
        cwd=tmp_path,
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=dict(os.environ, COLUMNS="100"),
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        first = reader.readline()  # like `| head -1`
    _, stderr = child.communicate(timeout=300)
    assert first.startswith(b"BPTT for torch.nn.RNN")
    assert child.returncode == 0, stderr
    assert stderr == b""
    d = derivation(steps=8, input_size=1, hidden_size=2)
    module = tmp_path / "generated" / "rnn_tanh_t8_i1_h2.py"
    assert module.read_text(encoding="utf-8") == d.render()
    ast.parse(module.read_text(encoding="utf-8"))
    assert (tmp_path / "doc.tex").read_text(encoding="utf-8") == d.to_latex()
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "doc.tex",
        "generated",
        "rnn_tanh_t8_i1_h2.py",
    ]


class _GoneReader:
    """A stdout whose reader has gone: every write is a broken pipe."""

    encoding = "utf-8"

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass

    def fileno(self):
        raise OSError("no descriptor")


class _Mismatch:
    ok = False
    description = "a mismatch, made up by the test"

    def table(self):
        return "grad weight_hh_l0  1.0  MISMATCH"

    def summary(self):
        return "MISMATCH"


def test_verification_runs_and_decides_the_status_after_stdout_has_gone(tmp_path, monkeypatch):
    import symbptt.verification.verify

    verified = []
    monkeypatch.setattr(
        symbptt.verification.verify, "verify", lambda *a, **k: verified.append(1) or _Mismatch()
    )
    monkeypatch.setattr(sys, "stdout", _GoneReader())
    assert main(["derive", "--out", str(tmp_path)]) == 1
    assert verified == [1]
    assert (tmp_path / "rnn_tanh_t3_i1_h2.py").is_file()


def test_full_disk_stdout_is_one_line_and_status_2_after_writing(tmp_path):
    with open("/dev/full", "w") as full:
        result = run_cli("derive", cwd=tmp_path, stdout=full)
    assert result.returncode == 2
    assert "No space left on device" in one_line(result.stderr)
    module = tmp_path / "generated" / "rnn_tanh_t3_i1_h2.py"
    assert (
        module.read_text(encoding="utf-8")
        == derivation(steps=3, input_size=1, hidden_size=2).render()
    )


ASCII_LOCALE = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
"""The C locale without Python's UTF-8 mode: stdout and every pipe default to ASCII."""


@pytest.mark.parametrize(
    "env, encoding",
    [({"PYTHONIOENCODING": "ascii"}, "ascii"), ({"PYTHONIOENCODING": "latin-1"}, "latin-1")]
    + [(ASCII_LOCALE, "ascii")],
    ids=["ascii", "latin-1", "C-locale"],
)
def test_stdout_that_cannot_show_unicode_still_works(tmp_path, env, encoding):
    result = run_cli("derive", "--latex", "doc.md", cwd=tmp_path, env=env, encoding=encoding)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "\\u2202L/\\u2202W_ih" in result.stdout  # ∂L/∂W_ih, escaped
    assert "all match" in result.stdout
    d = derivation(steps=3, input_size=1, hidden_size=2)
    module = tmp_path / "generated" / "rnn_tanh_t3_i1_h2.py"
    assert module.read_text(encoding="utf-8") == d.render()  # files are UTF-8 whatever the locale
    assert (tmp_path / "doc.md").read_text(encoding="utf-8") == d.to_markdown()


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 80000000000000 bytes. Error code 12 (Cannot "
            "allocate memory)"
        ),
        RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    ],
    ids=["MemoryError", "torch-cpu", "torch-cuda"],
)
def test_out_of_memory_is_one_line_and_status_2(monkeypatch, capsys, tmp_path, error):
    def exhausted(args):
        raise error

    monkeypatch.setattr(cli, "derivation_from_args", exhausted)
    assert main(["derive", "--out", str(tmp_path)]) == 2
    err = one_line(capsys.readouterr().err)
    assert "out of memory" in err
    assert list(tmp_path.iterdir()) == []


def test_other_runtime_errors_are_not_mistaken_for_memory(monkeypatch, tmp_path):
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "derivation_from_args", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["derive", "--out", str(tmp_path)])


# --- 2. --pdf does not replace a PDF symbptt did not make -----------------------------------

needs_pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex")


def test_pdf_refuses_a_foreign_pdf_before_writing_anything(tmp_path):
    foreign = tmp_path / "thesis.pdf"
    foreign.write_bytes(b"%PDF-1.5\n% my thesis\n")
    result = run_cli("latex", "-o", "thesis.tex", "--pdf", cwd=tmp_path)
    assert result.returncode == 2
    assert "thesis.pdf exists and was not generated by symbptt" in one_line(result.stderr)
    assert foreign.read_bytes() == b"%PDF-1.5\n% my thesis\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.pdf"]


@needs_pdflatex
def test_pdf_symbptt_made_is_recognised_and_replaced(tmp_path):
    (tmp_path / "thesis.pdf").write_bytes(b"%PDF-1.5\n% my thesis\n")
    assert run_cli("latex", "-o", "thesis.tex", "--pdf", "--force", cwd=tmp_path).returncode == 0
    made = (tmp_path / "thesis.pdf").read_bytes()
    assert made.startswith(b"%PDF") and b"\n/Creator (symbptt)\n" in made
    # nothing of pdflatex's (aux, log) is left next to the document
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.pdf", "thesis.tex"]
    result = run_cli("latex", "-o", "thesis.tex", "--pdf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# --- 3. ownership is an exact header line, and a hand edit is noticed -----------------------


def checksum_line(text: str, index: int) -> str:
    """The checksum line at ``index``, checked against sha256 of the text without it."""
    lines = text.split("\n")
    line = lines.pop(index)
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    assert digest in line
    return line


def test_header_checksum_is_sha256_of_the_file_without_that_line(founding):
    source = founding.render()
    lines = source.split("\n")
    assert lines[2].startswith("Generated by symbptt from ") and lines[2].endswith(
        " — do not edit."
    )
    assert checksum_line(source, 3).startswith(CHECKSUM_PREFIX)
    assert checksum_line(founding.to_latex(), 1).startswith("% " + CHECKSUM_PREFIX)
    md = checksum_line(founding.to_markdown(), 1)
    assert md.startswith("<!-- " + CHECKSUM_PREFIX) and md.endswith(" -->")


def test_marker_words_elsewhere_do_not_make_a_file_ours(tmp_path, founding):
    target = tmp_path / "rnn_tanh_t3_i1_h2.py"
    target.write_text('"""My notes.\n\nGenerated by symbptt, then rewritten by me.\n"""\n')
    with pytest.raises(CodegenError, match="was not generated by symbptt; use --force"):
        founding.write(tmp_path)
    assert target.read_text().startswith('"""My notes.')


def test_a_hand_edited_module_is_refused_unless_forced(tmp_path, founding):
    path = founding.write(tmp_path)
    path.write_text(path.read_text(encoding="utf-8") + "# my fix\n", encoding="utf-8")
    with pytest.raises(CodegenError, match="edited by hand since symbptt wrote it"):
        founding.write(tmp_path)
    assert path.read_text(encoding="utf-8").endswith("# my fix\n")
    assert founding.write(tmp_path, force=True) == path
    assert path.read_text(encoding="utf-8") == founding.render()
    founding.write(tmp_path)  # unchanged since written: replaced without a word


def test_a_hand_edited_document_is_refused_by_the_cli(tmp_path):
    assert run_cli("latex", "-o", "doc.md", cwd=tmp_path).returncode == 0
    doc = tmp_path / "doc.md"
    doc.write_text(doc.read_text(encoding="utf-8").replace("Layer:", "Layer (mine):"))
    result = run_cli("latex", "-o", "doc.md", cwd=tmp_path)
    assert result.returncode == 2
    assert "doc.md was edited by hand since symbptt wrote it" in one_line(result.stderr)
    assert "(mine)" in doc.read_text(encoding="utf-8")


def test_a_file_from_before_checksums_is_still_ours(tmp_path, founding):
    lines = founding.render().split("\n")
    del lines[3]  # an older symbptt wrote no checksum line
    (tmp_path / "rnn_tanh_t3_i1_h2.py").write_text("\n".join(lines), encoding="utf-8")
    founding.write(tmp_path)


def test_a_plot_is_ours_only_by_its_metadata_line(tmp_path, capsys):
    svg = tmp_path / "flow.svg"
    svg.write_text("<svg><!-- Generated by symbptt flow: my redrawing --></svg>\n")
    assert main(["flow", "--plot", str(svg)]) == 2
    assert "was not generated by symbptt" in capsys.readouterr().err
    assert svg.read_text().startswith("<svg><!--")


# --- 4. module names: one validator for the CLI and the API --------------------------------

BAD_NAMES = ["../x", "a b", "class", "torch", "math", "symbptt", "os", "__init__", "", "x\n"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_module_names_are_refused_by_render_write_and_load(tmp_path, founding, name):
    out = tmp_path / "out"
    for call in (
        lambda: founding.render(name),
        lambda: founding.write(out, name=name),
        lambda: founding.load(name),
    ):
        with pytest.raises(SpecError):
            call()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["torch", "class", "typing"])
def test_bad_module_names_are_refused_by_the_cli(tmp_path, name):
    result = run_cli("derive", "--name", name, cwd=tmp_path)
    assert result.returncode == 2
    assert repr(name) in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_good_module_names_are_accepted(founding):
    assert "mine_2" in founding.render("mine_2")


# --- 5. permissions and interrupted writes --------------------------------------------------


@pytest.mark.parametrize("umask", [0o077, 0o002])
def test_written_files_honour_the_umask(tmp_path, founding, umask):
    old = os.umask(umask)
    try:
        path = founding.write(tmp_path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_interrupted_write_leaves_nothing_behind(tmp_path, founding, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        founding.write(tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- 7. plots are deterministic --------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_plots_are_byte_identical_between_runs(tmp_path, capsys, suffix):
    pytest.importorskip("matplotlib")
    first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    assert main(["flow", "--plot", str(first)]) == 0
    assert main(["flow", "--plot", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
