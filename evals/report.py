"""Reports of an evaluation run: Markdown (for a terminal or a pull request) and one
self-contained HTML file (inline CSS, inline-SVG plots, thumbnails as data URIs).

Both are rendered from a `RunResults` alone; `write_reports` writes them, with results.json,
into the run folder, each file atomically.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from sensorium.evals.metrics import ReliabilityBin, percentile
from sensorium.evals.results import Failure, RunResults

if TYPE_CHECKING:
    from sensorium.evals.calibrate import Calibration

# Scopes that are not an expert's (or the fused decision's) answer quality.
_OTHER_SCOPES = ("turn", "retrieval", "routing")
# Column order of the tables; metrics not listed follow in the order first seen.
_METRIC_ORDER = (
    "accuracy",
    "coverage",
    "selective_accuracy",
    "ece",
    "bleu4",
    "rouge_l",
    "cider_d",
    "recall@1",
    "recall@5",
    "recall@10",
    "mrr",
    "exact_match",
    "precision",
    "recall",
    "support",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_mean_ms",
)
_COUNT_METRICS = frozenset({"support"})
_THUMBNAIL_PX = 160
_NO_IMAGE = "(no image)"
_DASH = "–"

# Cells are plain text; a row is (cells, emphasised).
_Row = tuple[list[str], bool]


# Numbers and table data, shared by both reports


def _format_metric(name: str, value: float) -> str:
    """3 decimals for scores, 1 for milliseconds, whole numbers for counts."""
    if not math.isfinite(value):
        return str(value)
    if name.endswith("_ms"):
        return f"{value:.1f}"
    if name in _COUNT_METRICS and value.is_integer():
        return str(int(value))
    return f"{value:.3f}"


def _format_optional(value: float | None) -> str:
    return _DASH if value is None else f"{value:.3f}"


def _is_other_scope(scope: str) -> bool:
    return scope in _OTHER_SCOPES or scope.startswith("tool:")


def _experts(results: RunResults) -> list[str]:
    """Expert scopes, in the order the run recorded them."""
    return [s for s in results.metrics if s != "fused" and not _is_other_scope(s)]


def _other_scopes(results: RunResults) -> list[str]:
    present = [s for s in _OTHER_SCOPES if s in results.metrics]
    tools = sorted(s for s in results.metrics if s.startswith("tool:"))
    return present + tools


def _columns(results: RunResults, scopes: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for scope in scopes:
        seen.extend(name for name in results.metrics[scope] if name not in seen)
    known = [name for name in _METRIC_ORDER if name in seen]
    return known + [name for name in seen if name not in _METRIC_ORDER]


def _scope_table(
    results: RunResults, scopes: Sequence[str], label: dict[str, str] | None = None
) -> tuple[list[str], list[_Row]]:
    """Header and rows of "scope | metric... | n"; the `fused` row is emphasised."""
    columns = _columns(results, scopes)
    rows: list[_Row] = []
    for scope in scopes:
        values = results.metrics[scope]
        cells = [(label or {}).get(scope, scope)]
        cells += [_format_metric(c, values[c]) if c in values else "" for c in columns]
        count = results.counts.get(scope)
        cells.append(_DASH if count is None else str(count))
        rows.append((cells, scope == "fused"))
    return ["scope", *columns, "n"], rows


def _answer_table(results: RunResults) -> tuple[list[str], list[_Row]] | None:
    """Experts, then fused; the best single expert is marked. None without such scopes."""
    scopes = _experts(results) + (["fused"] if "fused" in results.metrics else [])
    if not scopes:
        return None
    best = results.best_single
    label = {best: f"{best} (best single)"} if best else {}
    return _scope_table(results, scopes, label)


def _other_table(results: RunResults) -> tuple[list[str], list[_Row]] | None:
    scopes = _other_scopes(results)
    return _scope_table(results, scopes) if scopes else None


def _fused_vs_best(results: RunResults) -> str | None:
    """The line "fused 0.610 vs best single expert (classify) 0.580: +0.030 over N samples"."""
    metric, best = results.main_metric, results.best_single
    fused = results.metrics.get("fused", {})
    single = results.metrics.get(best, {}) if best else {}
    if not metric or metric not in fused or metric not in single:
        return None
    gain = fused[metric] - single[metric]
    sign = "+" if gain >= 0 else "-"
    n = results.counts.get("fused", results.samples)
    return (
        f"fused {_format_metric(metric, fused[metric])} vs best single expert ({best}) "
        f"{_format_metric(metric, single[metric])}: {sign}{_format_metric(metric, abs(gain))} "
        f"over {n} samples"
    )


def _failure_cells(failure: Failure) -> list[str]:
    return [
        failure.id,
        failure.prompt,
        " | ".join(failure.expected),
        failure.got,
        _format_optional(failure.confidence),
        _format_optional(failure.score),
    ]


_FAILURE_HEADER = ["id", "prompt", "expected", "got", "confidence", "score"]


def _header_line(results: RunResults) -> str:
    return (
        f"samples: {results.samples} · errors: {results.errors} · profile: {results.profile}"
        f" · config: {results.config_digest[:12]} · finished: {results.finished or _DASH}"
    )


def _title(results: RunResults) -> str:
    return f"Evaluation report: {results.suite} ({results.task})"


# Markdown


def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Sequence[_Row]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for cells, strong in rows:
        shown = [_md_cell(c) for c in cells]
        if strong:
            shown = [f"**{c}**" if c else c for c in shown]
        lines.append("| " + " | ".join(shown) + " |")
    return "\n".join(lines)


def markdown_report(results: RunResults) -> str:
    """The run as Markdown: header, metric tables, fused vs best single, worst failures.

    Scores have 3 decimals, latencies (`*_ms`) 1; `|` in cells is escaped.
    """
    parts = [f"# {_title(results)}", _header_line(results)]
    answer = _answer_table(results)
    if answer:
        parts += ["## Answer quality", _md_table(*answer)]
    line = _fused_vs_best(results)
    if line:
        parts.append(line)
    other = _other_table(results)
    if other:
        parts += ["## Latency, retrieval and routing", _md_table(*other)]
    if results.failures:
        rows = [(_failure_cells(f), False) for f in results.failures]
        parts += ["## Worst failures", _md_table(_FAILURE_HEADER, rows)]
    return "\n\n".join(parts) + "\n"


# HTML


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table_html(header: Sequence[str], rows: Sequence[_Row], numeric_from: int = 1) -> str:
    """An HTML table of plain-text cells (escaped); emphasised rows get class "strong", cells
    from column `numeric_from` on are right-aligned."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for cells, strong in rows:
        tds = "".join(
            f'<td class="num">{_esc(c)}</td>' if i >= numeric_from else f"<td>{_esc(c)}</td>"
            for i, c in enumerate(cells)
        )
        body.append(f'<tr class="strong">{tds}</tr>' if strong else f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">'
        f"<title>{_esc(title)}</title>{''.join(body)}</svg>"
    )


def _bar_chart_svg(values: Sequence[tuple[str, float]], highlight: str, metric: str) -> str:
    """Horizontal bars of `metric` per scope; the `highlight` scope's bar stands out.

    The scale is [0, 1] for scores, or [0, max] when a value exceeds 1 (CIDEr-D).
    """
    label_w, bar_w, row_h, top = 150, 300, 26, 28
    top_value = max([1.0, *(v for _, v in values if math.isfinite(v))])
    height = top + row_h * len(values) + 10
    body = [f'<text x="4" y="18" class="t">{_esc(metric)} by scope</text>']
    for i, (name, value) in enumerate(values):
        y = top + i * row_h
        shown = max(0.0, value) if math.isfinite(value) else 0.0
        width = bar_w * min(shown, top_value) / top_value
        cls = "bar hi" if name == highlight else "bar"
        body += [
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{_esc(name)}</text>',
            f'<rect class="{cls}" x="{label_w}" y="{y + 3}" width="{width:.1f}" height="16"/>',
            f'<text x="{label_w + width + 5:.1f}" y="{y + 15}">'
            f"{_esc(_format_metric(metric, value))}</text>",
        ]
    return _svg(label_w + bar_w + 70, height, f"{metric} by scope", body)


def _reliability_svg(scope: str, bins: Sequence[ReliabilityBin], ece: float | None) -> str:
    """Reliability diagram: accuracy against confidence per non-empty bin, and the diagonal."""
    left, top, size = 44, 30, 200

    def x(v: float) -> float:
        return left + size * min(max(v, 0.0), 1.0)

    def y(v: float) -> float:
        return top + size * (1 - min(max(v, 0.0), 1.0))

    title = scope + (f" · ECE {ece:.3f}" if ece is not None else "")
    body = [f'<text x="{left}" y="18" class="t">{_esc(title)}</text>']
    for b in bins:
        if b.count <= 0:
            continue
        tip = f"{b.lower:.1f}–{b.upper:.1f}: {b.count} samples, accuracy {b.accuracy:.3f}"
        body.append(
            f'<rect class="bar" x="{x(b.lower) + 1:.1f}" y="{y(b.accuracy):.1f}" '
            f'width="{max(x(b.upper) - x(b.lower) - 2, 1):.1f}" '
            f'height="{y(0) - y(b.accuracy):.1f}"><title>{_esc(tip)}</title></rect>'
        )
    body += [
        f'<line class="diag" x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}"/>',
        f'<rect class="frame" x="{left}" y="{top}" width="{size}" height="{size}"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        body += [
            f'<text x="{x(tick)}" y="{y(0) + 14}" text-anchor="middle">{tick:g}</text>',
            f'<text x="{left - 4}" y="{y(tick) + 4}" text-anchor="end">{tick:g}</text>',
        ]
    body += [
        f'<text x="{left + size / 2}" y="{y(0) + 30}" text-anchor="middle">confidence</text>',
        f'<text x="12" y="{top + size / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + size / 2})">accuracy</text>',
    ]
    return _svg(left + size + 16, top + size + 40, f"reliability of {scope}", body)


def _histogram_svg(latencies: Sequence[float], bins: int = 20) -> str:
    """Histogram of per-sample latencies (ms), with p50 and p95 marked."""
    left, top, width, height = 44, 30, 480, 160
    low, high = min(latencies), max(latencies)
    span = (high - low) or 1.0
    counts = [0] * bins
    for value in latencies:
        counts[min(int((value - low) / span * bins), bins - 1)] += 1
    peak = max(counts)

    def x(v: float) -> float:
        return left + width * (v - low) / span

    body = [f'<text x="{left}" y="18" class="t">latency per sample (ms), n={len(latencies)}</text>']
    step = width / bins
    for i, count in enumerate(counts):
        if count:
            h = height * count / peak
            tip = f"{low + i * span / bins:.1f}–{low + (i + 1) * span / bins:.1f} ms: {count}"
            body.append(
                f'<rect class="bar" x="{left + i * step + 1:.1f}" y="{top + height - h:.1f}" '
                f'width="{step - 2:.1f}" height="{h:.1f}"><title>{_esc(tip)}</title></rect>'
            )
    for q, dy in ((50, 0), (95, 12)):
        value = percentile(latencies, q)
        body += [
            f'<line class="mark" x1="{x(value):.1f}" y1="{top}" x2="{x(value):.1f}" '
            f'y2="{top + height}"/>',
            f'<text x="{x(value) + 3:.1f}" y="{top + 10 + dy}">p{q} {value:.1f}</text>',
        ]
    body += [
        f'<line class="axis" x1="{left}" y1="{top + height}" x2="{left + width}" '
        f'y2="{top + height}"/>',
        f'<text x="{left}" y="{top + height + 14}" text-anchor="middle">{low:.1f}</text>',
        f'<text x="{left + width}" y="{top + height + 14}" text-anchor="middle">{high:.1f}</text>',
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{peak}</text>',
        f'<text x="{left + width / 2}" y="{top + height + 28}" text-anchor="middle">ms</text>',
    ]
    return _svg(left + width + 40, top + height + 36, "latency histogram", body)


def _thumbnail_data_uri(image: str | None, base: Path | None = None) -> str | None:
    """The image as a JPEG data URI (RGB, at most 160 px a side, quality 80), or None when
    there is no image or it cannot be read. A relative path that does not exist is also
    tried relative to `base` (the suite's folder)."""
    if not image:
        return None
    path = Path(image).expanduser()
    if not path.is_absolute() and not path.exists() and base is not None:
        path = base / path
    try:
        with Image.open(path) as opened:
            thumb = opened.convert("RGB")
        thumb.thumbnail((_THUMBNAIL_PX, _THUMBNAIL_PX))
        buffer = io.BytesIO()
        thumb.save(buffer, format="JPEG", quality=80)
    except Exception:  # any unreadable image is shown as "(no image)"
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _failure_card(failure: Failure, base: Path | None) -> str:
    uri = _thumbnail_data_uri(failure.image, base)
    picture = (
        f'<img src="{uri}" alt="{_esc(failure.image)}">'
        if uri
        else f'<div class="noimg">{_esc(_NO_IMAGE)}</div>'
    )
    expected = " | ".join(failure.expected) or _DASH
    fields = [
        ("prompt", failure.prompt or _DASH),
        ("expected", expected),
        ("got", failure.got or _DASH),
        ("confidence", _format_optional(failure.confidence)),
        ("score", _format_optional(failure.score)),
    ]
    rows = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in fields)
    return f'<div class="card">{picture}<div><h3>{_esc(failure.id)}</h3><dl>{rows}</dl></div></div>'


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.meta { color: #555; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.strong td { font-weight: bold; background: #eef4ff; }
svg { margin: .5em 1em .5em 0; font-size: 11px; }
svg text { fill: #333; } svg text.t { font-size: 13px; font-weight: bold; }
.bar { fill: #9bb7d4; } .bar.hi { fill: #d9822b; }
.diag { stroke: #888; stroke-dasharray: 4 3; } .frame { fill: none; stroke: #aaa; }
.axis { stroke: #888; } .mark { stroke: #c0392b; stroke-width: 1.5; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { display: flex; gap: 10px; border: 1px solid #ddd; border-radius: 6px; padding: 8px;
  width: 480px; }
.card img { max-width: 160px; max-height: 160px; }
.noimg { width: 160px; height: 100px; display: flex; align-items: center;
  justify-content: center; background: #f2f2f2; color: #777; }
.card h3 { margin: 0 0 4px; font-size: 1em; }
dl { margin: 0; display: grid; grid-template-columns: auto 1fr; gap: 2px 8px; }
dt { color: #666; } dd { margin: 0; overflow-wrap: anywhere; }
"""


def html_report(results: RunResults) -> str:
    """The run as one self-contained HTML page: header, metric tables, a bar chart of the
    main metric, reliability diagrams, a latency histogram and the worst failures as cards
    with embedded thumbnails. Sections without data are left out."""
    title = _title(results)
    parts = [f"<h1>{_esc(title)}</h1>", f'<p class="meta">{_esc(_header_line(results))}</p>']
    answer = _answer_table(results)
    if answer:
        parts += ["<h2>Answer quality</h2>", _table_html(*answer)]
    line = _fused_vs_best(results)
    if line:
        parts.append(f"<p><strong>{_esc(line)}</strong></p>")
    metric = results.main_metric
    scopes = [*_experts(results), "fused"]
    bars = [(s, results.metrics[s][metric]) for s in scopes if metric in results.metrics.get(s, {})]
    if bars:
        parts.append(_bar_chart_svg(bars, "fused", metric))
    other = _other_table(results)
    if other:
        parts += ["<h2>Latency, retrieval and routing</h2>", _table_html(*other)]
    diagrams = [
        _reliability_svg(scope, bins, results.metrics.get(scope, {}).get("ece"))
        for scope, bins in results.reliability.items()
        if any(b.count > 0 for b in bins)
    ]
    if diagrams:
        parts += ["<h2>Reliability</h2>", "<div>" + "".join(diagrams) + "</div>"]
    if results.latencies_ms:
        parts += ["<h2>Latency</h2>", _histogram_svg(results.latencies_ms)]
    if results.failures:
        base = Path(results.suite_path).expanduser().parent if results.suite_path else None
        cards = "".join(_failure_card(f, base) for f in results.failures)
        parts += ["<h2>Worst failures</h2>", f'<div class="cards">{cards}</div>']
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def calibration_html(result: Calibration, run: str = "") -> str:
    """What `eval calibrate` fitted, as one self-contained page: the maps chosen, and a
    reliability diagram per expert and for the fused decision, as run and calibrated, on the
    held-out split (or where fitted, without one)."""
    scores = result.held_out or result.fitted
    where = "held-out samples" if result.held_out else "the samples it was fitted on"
    maps = dict(result.weights.calibration)
    if result.weights.fused_calibration is not None:
        maps["fused"] = result.weights.fused_calibration
    title = f"Calibration of {run}" if run else "Calibration"
    parts = [
        f"<h1>{_esc(title)}</h1>",
        f'<p class="meta">chosen weighting: {_esc(result.chosen)}; diagrams on {scores.samples} '
        f"{_esc(where)}</p>",
    ]
    for scope, before in scores.reliability_as_run.items():
        after = scores.reliability_fitted.get(scope, [])
        method = maps[scope].method if scope in maps else ""
        parts += [
            f"<h2>{_esc(scope)}" + (f" ({_esc(method)} map)" if method else "") + "</h2>",
            "<div>"
            + _reliability_svg(f"{scope}, as run", before, scores.ece_as_run.get(scope))
            + _reliability_svg(f"{scope}, calibrated", after, scores.ece_fitted.get(scope))
            + "</div>",
        ]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


# Files


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.chmod(temp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_reports(results: RunResults, run_dir: Path) -> list[Path]:
    """Write results.json, report.md and report.html into `run_dir` (created if missing),
    each atomically; return their paths in that order."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    outputs = [
        (run_dir / "results.json", results.model_dump_json(indent=2) + "\n"),
        (run_dir / "report.md", markdown_report(results)),
        (run_dir / "report.html", html_report(results)),
    ]
    for path, text in outputs:
        _write_atomic(path, text)
    return [path for path, _ in outputs]
