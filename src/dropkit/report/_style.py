"""The report's inline stylesheet (system fonts only, no external resources)."""

from __future__ import annotations

CSS = """
:root {
  --ink: #1f2933; --muted: #5f6b7a; --line: #e3e7ec; --bg: #f6f8fa;
  --card: #ffffff; --accent: #0072b2; --good: #0b7a4b; --good-bg: #e7f6ee;
}
* { box-sizing: border-box; }
html { background: var(--bg); }
body {
  margin: 0; color: var(--ink); line-height: 1.5;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
    "DejaVu Sans", Arial, sans-serif;
}
.wrap { max-width: 1080px; margin: 0 auto; padding: 0 24px; }
header {
  background: linear-gradient(120deg, #0b3954 0%, #0072b2 100%); color: #fff;
  padding: 28px 0 0; margin-bottom: 28px;
}
header h1 { margin: 0 0 4px; font-size: 26px; font-weight: 650; letter-spacing: -0.01em; }
header .dataset { margin: 0 0 18px; color: #d7e9f7; font-size: 14px; }
nav { display: flex; flex-wrap: wrap; gap: 4px; }
nav a {
  color: #e8f3fb; text-decoration: none; font-size: 13px; padding: 8px 12px;
  border-radius: 8px 8px 0 0;
}
nav a:hover { background: rgba(255, 255, 255, 0.14); }
section {
  background: var(--card); border: 1px solid var(--line); border-radius: 12px;
  padding: 20px 24px; margin: 0 0 22px; box-shadow: 0 1px 2px rgba(16, 24, 40, 0.04);
}
h2 { margin: 0 0 8px; font-size: 18px; font-weight: 650; }
p.reading {
  margin: 0 0 12px; padding: 10px 14px; background: #eef6fc;
  border-left: 4px solid var(--accent); border-radius: 0 8px 8px 0; font-size: 14.5px;
}
p.note { margin: 8px 0 12px; color: var(--muted); font-size: 13px; }
figure { margin: 0; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
.scroll { overflow-x: auto; max-width: 100%; }
table.metrics {
  width: 100%; border-collapse: collapse; font-size: 13.5px;
  font-variant-numeric: tabular-nums; margin-top: 6px;
}
table.metrics th, table.metrics td {
  padding: 8px 8px; border-bottom: 1px solid var(--line); text-align: right;
  white-space: nowrap;
}
table.metrics thead th {
  color: var(--muted); font-weight: 600; font-size: 11.5px; text-transform: uppercase;
  letter-spacing: 0.02em; border-bottom: 2px solid var(--line);
  white-space: normal; vertical-align: bottom; line-height: 1.25;
}
table.metrics th:first-child { text-align: left; }
table.metrics tbody th { font-weight: 600; white-space: normal; min-width: 8.5em; }
table.metrics tbody tr:hover { background: #fafbfc; }
table.metrics td.best { color: var(--good); font-weight: 700; background: var(--good-bg); }
.sub { display: block; font-weight: 400; color: var(--muted); font-size: 12px; }
ul { margin: 0; padding-left: 20px; color: var(--muted); font-size: 14px; }
footer { color: var(--muted); font-size: 12px; padding: 4px 24px 32px; }
@media (max-width: 960px) {
  section { padding: 18px 16px; }
  .wrap { padding: 0 16px; }
  table.metrics { font-size: 12.5px; }
  table.metrics th, table.metrics td { padding: 7px 5px; }
}
"""
