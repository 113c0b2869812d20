"""Every plot hant draws, in one style: matplotlib's object API on an Agg canvas, so that drawing
never switches the process's matplotlib backend nor touches pyplot's global figures."""
from __future__ import annotations

from pathlib import Path
from typing import Any

DPI = 120


def new_axes(width: float = 6.4, height: float = 4.2) -> tuple[Any, Any]:
    """A figure of ``width`` x ``height`` inches on its own Agg canvas, and its one axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save(fig: Any, path: Path) -> None:
    """Lay ``fig`` out and write it to ``path`` as a PNG (its folder made where missing)."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def plot_pareto(points: list[dict], path: Path, title: str) -> None:
    """Accuracy against measured latency (filled) and predicted latency (hollow, joined to its
    measurement), one point per network (``label``, ``latency_ms``, ``predicted_ms``, ``accuracy``)."""
    fig, ax = new_axes(6, 4)
    for p in points:
        teacher = p["label"] == "teacher"
        ax.scatter(p["latency_ms"], p["accuracy"], marker="*" if teacher else "o", s=120 if teacher else 40,
                   color="black" if teacher else "tab:blue", zorder=3)
        ax.annotate(p["label"], (p["latency_ms"], p["accuracy"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if p.get("predicted_ms") is not None:
            ax.scatter(p["predicted_ms"], p["accuracy"], facecolors="none", edgecolors="tab:orange", s=40, zorder=3)
            ax.plot([p["predicted_ms"], p["latency_ms"]], [p["accuracy"]] * 2, color="tab:orange", lw=0.8, zorder=2)
    ax.scatter([], [], color="tab:blue", label="student, measured")
    ax.scatter([], [], facecolors="none", edgecolors="tab:orange", label="student, predicted")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save(fig, path)


def plot_front(front: dict, path: Path) -> None:
    """Total score against predicted latency, one marker per budget, with the teacher's latency marked."""
    solved = [p for p in front["points"] if p["status"] != "infeasible"]
    fig, ax = new_axes()
    ax.step(
        [p["predicted_latency_ms"] for p in solved], [p["total_score"] for p in solved],
        where="post", marker="o", color="tab:blue", label="optimal selection per budget",
    )
    for p in solved:
        ax.annotate(f"{p['budget_fraction']:.2f}", (p["predicted_latency_ms"], p["total_score"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7, color="tab:gray")
    ax.axvline(front["teacher_ms"], color="tab:red", linestyle="--", linewidth=1, label="teacher")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("total score (lower is better)")
    ax.set_title(f"Pareto front ({front['backend']}; labels: budget / teacher latency)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    save(fig, path)
