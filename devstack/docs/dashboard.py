"""The operators' dashboard as the template defines it: its body read back from the
synthesized ``AWS::CloudWatch::Dashboard``, the metrics it references counted by the
rule below, and a picture of it drawn from that definition (the grid, each widget's
title and lines, the alarms), so that the picture in ``docs/`` is the dashboard deployed.

``python -m devstack.docs.dashboard`` (``make docs``) writes ``docs/dashboard.svg``; a test
fails when the committed file no longer matches the synthesized template.

How the metrics are counted (CloudWatch's free tier: three custom dashboards
"referencing up to 50 metrics each"), conservatively: every line of every graph is one
metric, the same metric with another statistic or in another graph again; a metric-math
expression counts nothing of its own, but each metric it reads is a line of its own
(hidden or not); a ``SEARCH`` expression may return any number of metrics, so none is
allowed (``count_metrics`` raises). The alarm status widget references alarms, not
metrics: it counts nothing (each alarm is billed as an alarm metric already).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from devstack import PROJECT
from devstack.docs import generated
from devstack.emulation.template import resources, synthesized_template

PICTURE = PROJECT / "docs" / "dashboard.svg"
DASHBOARD = "AWS::CloudWatch::Dashboard"


class UnboundedDashboard(ValueError):
    """A widget whose metrics cannot be counted before it runs (a SEARCH expression)."""


def _placeholder(token: Any) -> str:
    """A CloudFormation reference inside the body, as readable text: ``${LogicalId}``,
    ``${LogicalId.Attribute}``, ``${AWS::Region}``."""
    if isinstance(token, dict) and "Ref" in token:
        return "${" + str(token["Ref"]) + "}"
    if isinstance(token, dict) and "Fn::GetAtt" in token:
        return "${" + ".".join(token["Fn::GetAtt"]) + "}"
    raise ValueError(f"the dashboard body holds a reference the reader does not know: {token}")


def _text(value: Any) -> str:
    """A string property, its references as placeholders."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(
            part if isinstance(part, str) else _placeholder(part) for part in parts
        )
    return _placeholder(value)


def dashboards(template: dict[str, Any]) -> dict[str, Any]:
    """The template's dashboards by logical id."""
    return resources(template, DASHBOARD)


def read(resource: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The name and the parsed body of a dashboard resource."""
    properties = resource["Properties"]
    return _text(properties["DashboardName"]), json.loads(_text(properties["DashboardBody"]))


def dashboard(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The name and the parsed body of the template's one dashboard."""
    ((_, resource),) = dashboards(template).items()
    return read(resource)


@dataclass(frozen=True)
class Line:
    """One line of a graph: the metric it draws and how."""

    namespace: str
    name: str
    dimensions: dict[str, str]
    statistic: str
    label: str
    right: bool = False


def lines(widget: dict[str, Any]) -> list[Line]:
    """The metric lines of a metric widget (a metric-math expression is not one)."""
    properties = widget["properties"]
    found = []
    for entry in properties.get("metrics", []):
        options = entry[-1] if entry and isinstance(entry[-1], dict) else {}
        if "expression" in options:
            if "SEARCH" in options["expression"].upper():
                raise UnboundedDashboard(f"{properties.get('title')}: {options['expression']}")
            continue
        reference = entry[:-1] if options else entry
        namespace, name, *pairs = reference
        found.append(
            Line(
                namespace=namespace,
                name=name,
                dimensions=dict(zip(pairs[::2], pairs[1::2], strict=True)),
                statistic=options.get("stat", properties.get("stat", "Average")),
                label=options.get("label", name),
                right=options.get("yAxis") == "right",
            )
        )
    return found


def count_metrics(body: dict[str, Any]) -> int:
    """The metrics the dashboard references, by the module's rule."""
    return sum(len(lines(widget)) for widget in body["widgets"] if widget["type"] == "metric")


def alarm_ids(body: dict[str, Any]) -> list[str]:
    """The logical ids of the alarms its alarm status widgets show."""
    return [
        arn.removeprefix("${").removesuffix(".Arn}")
        for widget in body["widgets"]
        if widget["type"] == "alarm"
        for arn in widget["properties"]["alarms"]
    ]


# The picture: CloudWatch's 24-column grid, at these many pixels a unit.
_UNIT_X = 40
_UNIT_Y = 30
_MARGIN = 16
_HEADER = 52
_FONT = "font-family='Helvetica, Arial, sans-serif'"
# CloudWatch's default line colours, in its order.
_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_CHAR = 6.4  # an 11 px character's width, at most about
_ALARMS_PER_ROW = 6


def alarm_name(logical_id: str) -> str:
    """``AlarmsDeadLetters20E28703`` -> ``DeadLetters`` (the alarm's construct id)."""
    return re.sub(r"[0-9A-F]{8}$", "", logical_id).removeprefix("Alarms")


def svg(template: dict[str, Any]) -> str:
    """The whole of ``docs/dashboard.svg`` for ``template``."""
    name, body = dashboard(template)
    widgets = body["widgets"]
    width = 24 * _UNIT_X + 2 * _MARGIN
    height = _HEADER + max(w["y"] + w["height"] for w in widgets) * _UNIT_Y + _MARGIN
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' {_FONT} font-size='11'>",
        f"<rect width='{width}' height='{height}' fill='#f2f3f3'/>",
        f"<text x='{_MARGIN}' y='24' font-size='16' font-weight='bold' fill='#16191f'>"
        f"CloudWatch dashboard {escape(name.replace('${AWS::Region}', '<region>'))}</text>",
        f"<text x='{_MARGIN}' y='42' fill='#545b64'>Drawn from the synthesized template "
        f"(make docs): {count_metrics(body)} metrics of the 50 a free dashboard may "
        "reference, 5-minute periods; the data and the alarms' states are the console's."
        "</text>",
    ]
    for widget in widgets:
        x = _MARGIN + widget["x"] * _UNIT_X
        y = _HEADER + widget["y"] * _UNIT_Y
        w, h = widget["width"] * _UNIT_X - 8, widget["height"] * _UNIT_Y - 8
        title = widget["properties"].get("title", "")
        out.append(
            f"<g transform='translate({x},{y})'>"
            f"<rect width='{w}' height='{h}' rx='3' fill='#ffffff' stroke='#d5dbdb'/>"
            f"<text x='10' y='18' font-size='13' font-weight='bold' fill='#16191f'>"
            f"{escape(title)}</text>"
        )
        if widget["type"] == "alarm":
            out += _alarms(widget, w)
        elif widget["type"] == "metric":
            out += _graph(widget, w, h)
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _alarms(widget: dict[str, Any], width: int) -> list[str]:
    """One tile per alarm, six a row (the widget's height in the stack holds them)."""
    tile = (width - 20) // _ALARMS_PER_ROW
    out = []
    for index, logical_id in enumerate(alarm_ids({"widgets": [widget]})):
        alarm = alarm_name(logical_id)
        tx = 10 + (index % _ALARMS_PER_ROW) * tile
        ty = 28 + (index // _ALARMS_PER_ROW) * 26
        out.append(
            f"<rect x='{tx}' y='{ty}' width='{tile - 8}' height='20' rx='2' fill='#fafafa' "
            f"stroke='#879596'/><text x='{tx + 8}' y='{ty + 14}' fill='#16191f'>"
            f"{escape(alarm)}</text>"
        )
    return out


def _legend(line: Line) -> str:
    """``label (statistic, right axis)``, the statistic once."""
    notes = [] if line.label.endswith(line.statistic) else [line.statistic]
    notes += ["right axis"] if line.right else []
    return f"{line.label} ({', '.join(notes)})" if notes else line.label


def _graph(widget: dict[str, Any], width: int, height: int) -> list[str]:
    """Empty axes and the legend: each line's label, statistic and axis."""
    drawn = lines(widget)
    legend_right = widget["properties"].get("legend", {}).get("position") == "right"
    items = [_legend(line) for line in drawn]
    # The legend: below the plot, flowing; or in columns on the right.
    places: list[tuple[float, float]] = []
    if legend_right:
        plot_width = width * 0.45
        column = (width - plot_width - 30) / 2
        rows = (len(items) + 1) // 2
        places = [
            (plot_width + 20 + (index // rows) * column, 40 + (index % rows) * 16)
            for index in range(len(items))
        ]
        plot_bottom = height - 12
    else:
        plot_width = width - 20
        flow: list[tuple[float, int]] = []  # each item's x and row
        cursor_x, row = 10.0, 0
        for item in items:
            advance = 16 + len(item) * _CHAR + 10
            if cursor_x + advance > width - 6 and cursor_x > 10:
                cursor_x, row = 10.0, row + 1
            flow.append((cursor_x, row))
            cursor_x += advance
        legend_top = height - 10 - (row + 1) * 16
        places = [(px, legend_top + line_row * 16 + 10) for px, line_row in flow]
        plot_bottom = legend_top - 8
    out = [
        f"<line x1='40' y1='{plot_bottom}' x2='{plot_width}' y2='{plot_bottom}' stroke='#aab7b8'/>",
        f"<line x1='40' y1='30' x2='40' y2='{plot_bottom}' stroke='#aab7b8'/>",
        f"<text x='34' y='{plot_bottom + 4}' text-anchor='end' fill='#687078'>0</text>",
    ]
    if any(line.right for line in drawn):
        out.append(
            f"<line x1='{plot_width}' y1='30' x2='{plot_width}' y2='{plot_bottom}' "
            "stroke='#aab7b8'/>"
        )
    for index, (item, (px, py)) in enumerate(zip(items, places, strict=True)):
        colour = _COLOURS[index % len(_COLOURS)]
        out.append(
            f"<rect x='{px:.0f}' y='{py - 8:.0f}' width='10' height='10' fill='{colour}'/>"
            f"<text x='{px + 14:.0f}' y='{py + 1:.0f}' fill='#16191f'>{escape(item)}</text>"
        )
    return out


def main() -> int:
    """Write ``docs/dashboard.svg`` from the synthesized template."""
    return generated.write(PICTURE, svg(synthesized_template()))


if __name__ == "__main__":
    sys.exit(main())
