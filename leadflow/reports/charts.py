"""Charts for the pages people send each other: matplotlib without a display, each figure as
PNG bytes, and those bytes as <img> tags a page carries inside it (it can be mailed as it is)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (imported when a chart is drawn, not before)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def from_zero(ax: Any, values: list[float]) -> None:
    """Bars of a count, a share or a time: the value axis starts at zero, even when every bar
    is zero (matplotlib would centre nothing on zero, half of the axis negative)."""
    ax.set_ylim(0, (max(values, default=0) or 1) * 1.1)


def img(alt: str, data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def imgs(images: dict[str, bytes]) -> str:
    return "".join(img(name, data) for name, data in images.items())
