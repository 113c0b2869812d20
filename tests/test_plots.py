"""hant.plots draws on its own canvas: PNGs are written and the process's matplotlib state is left alone."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_plots_write_pngs_without_pyplot_or_a_backend_switch(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import matplotlib
        matplotlib.use = lambda *a, **k: sys.exit("hant switched the matplotlib backend")
        from hant.plots import plot_front, plot_pareto
        out = Path({str(tmp_path)!r})
        plot_pareto([{{"label": "teacher", "latency_ms": 2.0, "predicted_ms": None, "accuracy": 90.0}},
                     {{"label": "student", "latency_ms": 1.0, "predicted_ms": 0.9, "accuracy": 88.0}}],
                    out / "a" / "pareto.png", "t")
        plot_front({{"teacher_ms": 2.0, "backend": "cpsat", "points": [
            {{"status": "optimal", "predicted_latency_ms": 1.0, "total_score": 0.5, "budget_fraction": 0.5}},
            {{"status": "infeasible"}}]}}, out / "front.png")
        assert "matplotlib.pyplot" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    for name in ("a/pareto.png", "front.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
