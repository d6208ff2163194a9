"""A wheel built from the checkout (a clean clone in CI) installs into a fresh virtualenv, where
`import mlx_gen_parity` works next to the pinned mlx and generates. Bounded in time: the build reuses the
project venv's scikit-build-core / nanobind (--no-build-isolation) and, when the Makefile names it
(MLXGP_PYTHON_BUILD_DIR), the build directory of the editable install, so only what changed recompiles;
pip installs mlx from its cache."""
import os
import subprocess
import sys
import time

from conftest import ROOT
from test_doc_examples import doc_blocks

BUILD_TIMEOUT_S = 1500
STEP_TIMEOUT_S = 600


def run(cmd, timeout, **kw):
    t0 = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc, time.perf_counter() - t0


def test_wheel_installs_in_fresh_venv(tmp_path, default_gguf, record_property, mgp):
    build_dir = os.environ.get("MLXGP_PYTHON_BUILD_DIR", str(tmp_path / "build"))
    _, t_build = run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-build-isolation", "--no-deps", "-w",
                      tmp_path / "dist", f"-Cbuild-dir={build_dir}"], BUILD_TIMEOUT_S)
    wheels = list((tmp_path / "dist").glob("mlx_gen_parity-*.whl"))
    assert len(wheels) == 1
    version = (ROOT / "VERSION").read_text().strip()
    assert f"-{version}-" in wheels[0].name

    # The fresh venv sees only what it installed (no PYTHONPATH, no editable finder of the project venv).
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    _, t_venv = run([base, "-m", "venv", venv], STEP_TIMEOUT_S, env=clean)
    py = venv / "bin" / "python"
    _, t_install = run([py, "-m", "pip", "install", "-q", wheels[0]], STEP_TIMEOUT_S, env=clean)
    # docs/python.md's basic usage example as it stands, then what the venv imported.
    code = doc_blocks()["Basic usage"] + (
        "\nimport mlx_gen_parity as m\n"
        "print('\\nRESULT', repr(out['text']), m.__version__, mx.__version__, len(out['tokens']), "
        "m._core.openblas_interposed)\n")
    proc, t_import = run([py, "-c", code], STEP_TIMEOUT_S, cwd=tmp_path, env=clean)  # not the source tree
    text, got_version, mlx_version, n, interposed = proc.stdout.split("\nRESULT ")[1].strip().rsplit(" ", 4)
    assert got_version == version and mlx_version == "0.32.4" and int(n) > 0
    # The same seeded sampling in the project's editable install gives the same text.
    model, tok = mgp.load(str(default_gguf))
    cfg = mgp.GenerationConfig(max_tokens=64, temperature=0.7, top_p=0.95, seed=17, do_sample=True)
    assert text == repr(mgp.generate(model, tok, "The capital of France is", cfg)["text"])
    # The wheel's extension finds OpenBLAS like the editable one (tests/python/test_blas.py).
    assert interposed == str(bool(mgp._core.openblas_library)), interposed
    for k, v in {"wheel_build_s": t_build, "venv_s": t_venv, "install_s": t_install, "import_run_s": t_import}.items():
        record_property(k, round(v, 1))
    print(f"\nwheel build {t_build:.1f} s, venv {t_venv:.1f} s, pip install {t_install:.1f} s, "
          f"import + generate {t_import:.1f} s")
