// Charts: every <div class="mc-chart" data-chart-url="…" data-chart-kind="line|bar"> is drawn
// with uPlot (loaded before this file) from its URL's JSON (ui/charts.py, docs/charts.md):
//   {"x": [...], "x_kind": "time"|"category", "tz"?: "Europe/Rome",
//    "series": [{"label", "unit", "values": [number|null, ...], "show"?: false}]}
// Drawn on load and whenever htmx brings a chart (or a chart with another URL); resized with
// its box; an empty or failed chart says so in words. Optional attributes, in the page's
// language: data-chart-x-label (the legend's name for x), data-chart-empty, data-chart-error.
(() => {
  "use strict";

  // Text-level contrast on white (≥ 4.5:1), in the order series come.
  const PALETTE = ["#b35c00", "#0072b2", "#0b7a5c", "#c0392b", "#6f42c1", "#c2185b", "#00838f", "#3b4a54"];
  const AXIS = "#5c6b74";
  const GRID = "#e3e8ec";
  const FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  const DEFAULT_HEIGHT = 300;
  const state = new WeakMap(); // element → {url, plot, observer, token}
  let tokens = 0;

  const lang = () => document.documentElement.lang || undefined;

  function numberFormat(digits) {
    return new Intl.NumberFormat(lang(), { maximumFractionDigits: digits });
  }

  function message(el, text, kind) {
    teardown(el);
    el.replaceChildren();
    const p = document.createElement("p");
    p.className = "mc-chart-message mc-chart-" + kind;
    p.textContent = text;
    el.appendChild(p);
    el.setAttribute("aria-busy", "false");
  }

  function teardown(el) {
    const s = state.get(el);
    if (!s) return;
    if (s.observer) s.observer.disconnect();
    if (s.plot) s.plot.destroy();
    s.plot = null;
    s.observer = null;
  }

  function plotHeight(el) {
    const css = parseInt(getComputedStyle(el).getPropertyValue("--mc-chart-height"), 10);
    return css > 0 ? css : DEFAULT_HEIGHT;
  }

  function isEmpty(data) {
    if (!data || !Array.isArray(data.x) || data.x.length === 0) return true;
    return !(data.series || []).some((s) => (s.values || []).some((v) => v !== null && v !== undefined));
  }

  function timeFormatter(tz) {
    const options = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (tz) options.timeZone = tz;
    let fmt;
    try {
      fmt = new Intl.DateTimeFormat("sv-SE", options); // ISO-like: 2025-03-05 13:05
    } catch (e) {
      delete options.timeZone;
      fmt = new Intl.DateTimeFormat("sv-SE", options);
    }
    return (ts) => (ts == null ? "–" : fmt.format(new Date(ts * 1000)));
  }

  // 24-hour ticks, dates as month-day (uPlot's axis "values" table).
  const TIME_TICKS = [
    [3600 * 24 * 365, "{YYYY}", null, null, null, null, null, null, 1],
    [3600 * 24 * 28, "{MMM}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600 * 24, "{MM}-{DD}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
    [60, "{HH}:{mm}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
    [1, "{HH}:{mm}:{ss}", "\n{YYYY}-{MM}-{DD}", null, "\n{MM}-{DD}", null, null, null, 1],
  ];

  // Bars of every visible series side by side within their category.
  function groupedBars() {
    const groupWidth = 0.8;
    const slot = (u, seriesIdx) => {
      const shown = u.series.map((s, i) => (i > 0 && s.show ? i : 0)).filter(Boolean);
      const n = Math.max(shown.length, 1);
      const at = Math.max(shown.indexOf(seriesIdx), 0);
      return { width: groupWidth / n, offset: -groupWidth / 2 + (at * groupWidth) / n };
    };
    return uPlot.paths.bars({
      size: [1, Infinity, 1],
      gap: 1,
      disp: {
        x0: { unit: 1, values: (u, seriesIdx) => { const s = slot(u, seriesIdx); return u.data[0].map((x) => x + s.offset); } },
        size: { unit: 1, values: (u, seriesIdx) => [slot(u, seriesIdx).width] },
      },
    });
  }

  function build(el, data) {
    const kind = el.dataset.chartKind === "bar" ? "bar" : "line";
    const category = data.x_kind === "category";
    const labels = category ? data.x.map(String) : null;
    const xs = category ? data.x.map((_, i) => i) : data.x;
    const units = [];
    (data.series || []).forEach((s) => { if (!units.includes(s.unit || "")) units.push(s.unit || ""); });
    const fmt = numberFormat(kind === "bar" ? 2 : 3);
    const xValue = category ? (u, i) => (i == null ? "–" : labels[Math.round(i)] ?? "–") : ((f) => (u, ts) => f(ts))(timeFormatter(data.tz));
    const series = [{ label: el.dataset.chartXLabel || "", value: xValue }];
    data.series.forEach((s, i) => {
      const color = PALETTE[i % PALETTE.length];
      const unit = s.unit || "";
      const one = {
        label: s.label,
        scale: "u" + units.indexOf(unit),
        show: s.show !== false,
        stroke: color,
        width: kind === "bar" ? 0 : 2,
        spanGaps: false,
        value: (u, v) => (v == null ? "–" : fmt.format(v) + (unit ? " " + unit : "")),
        points: { show: kind !== "bar" && xs.length < 60 },
      };
      if (kind === "bar") {
        one.fill = color;
        one.paths = groupedBars();
      }
      series.push(one);
    });
    const scales = { x: { time: !category } };
    if (category) scales.x.range = (u, min, max) => [(min ?? 0) - 0.5, (max ?? 0) + 0.5];
    units.forEach((unit, i) => {
      scales["u" + i] = kind === "bar" ? { range: (u, min, max) => [Math.min(0, min ?? 0), Math.max(max ?? 1, 0.001) * 1.05] } : {};
    });
    const yFmt = numberFormat(2);
    const axes = [
      {
        stroke: AXIS,
        font: FONT,
        grid: { stroke: GRID, width: 1 },
        ticks: { stroke: GRID, width: 1 },
        values: category
          ? (u, splits) => splits.map((v) => (Number.isInteger(v) && labels[v] !== undefined ? labels[v] : ""))
          : TIME_TICKS,
        ...(category ? { splits: () => xs.filter((i) => xs.length <= 16 || i % Math.ceil(xs.length / 16) === 0) } : {}),
      },
    ];
    units.slice(0, 2).forEach((unit, i) => {
      axes.push({
        scale: "u" + i,
        side: i === 0 ? 3 : 1,
        label: unit,
        labelFont: FONT,
        labelSize: 20,
        stroke: AXIS,
        font: FONT,
        size: 60,
        grid: { show: i === 0, stroke: GRID, width: 1 },
        ticks: { stroke: GRID, width: 1 },
        values: (u, splits) => splits.map((v) => yFmt.format(v)),
      });
    });
    const options = {
      width: Math.max(el.clientWidth, 200),
      height: plotHeight(el),
      series,
      scales,
      axes,
      legend: { live: true },
      cursor: { points: { show: kind !== "bar" }, drag: { x: !category, y: false } },
    };
    if (data.tz && !category) options.tzDate = (ts) => uPlot.tzDate(new Date(ts * 1000), data.tz);
    const aligned = [xs].concat(data.series.map((s) => s.values));
    return new uPlot(options, aligned, el);
  }

  async function draw(el) {
    const url = el.dataset.chartUrl;
    if (!url) return;
    const known = state.get(el);
    if (known && known.url === url && (known.plot || known.pending)) return;
    teardown(el);
    const token = ++tokens;
    const s = { url, plot: null, observer: null, token, pending: true };
    state.set(el, s);
    el.setAttribute("aria-busy", "true");
    el.classList.add("is-loading");
    const emptyText = el.dataset.chartEmpty || "No data for this period";
    const errorText = el.dataset.chartError || "The chart could not be loaded.";
    let data = null;
    let refusal = null;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      data = await response.json().catch(() => null);
      // A refused request (400) says why; anything else gets the page's own words.
      if (!response.ok) refusal = (response.status === 400 && data && data.error) || errorText;
    } catch (error) {
      refusal = errorText;
    }
    // Not a chart at all (e.g. the sign-in page after the session ended).
    if (!refusal && (!data || !Array.isArray(data.x))) refusal = errorText;
    if (state.get(el) !== s || !el.isConnected) return;
    s.pending = false;
    el.classList.remove("is-loading");
    if (refusal) {
      message(el, refusal, "error");
      return;
    }
    if (isEmpty(data)) {
      message(el, emptyText, "empty");
      return;
    }
    el.replaceChildren();
    s.plot = build(el, data);
    el.setAttribute("aria-busy", "false");
    if ("ResizeObserver" in window) {
      let frame = 0;
      s.observer = new ResizeObserver(() => {
        cancelAnimationFrame(frame);
        frame = requestAnimationFrame(() => {
          if (s.plot) s.plot.setSize({ width: Math.max(el.clientWidth, 200), height: plotHeight(el) });
        });
      });
      s.observer.observe(el);
    }
  }

  function drawAll(root) {
    const scope = root && root.querySelectorAll ? root : document;
    if (scope.matches && scope.matches(".mc-chart")) draw(scope);
    scope.querySelectorAll(".mc-chart").forEach(draw);
  }

  if (typeof uPlot === "undefined") return;
  document.addEventListener("DOMContentLoaded", () => drawAll(document));
  document.addEventListener("htmx:load", (event) => drawAll(event.target));
  document.addEventListener("htmx:afterSettle", (event) => drawAll(event.target));
  document.addEventListener("htmx:beforeCleanupElement", (event) => {
    const el = event.target;
    if (el && el.classList && el.classList.contains("mc-chart")) {
      teardown(el);
      state.delete(el);
    }
  });
  // An element whose data-chart-url is changed in place is drawn again.
  new MutationObserver((records) => {
    records.forEach((r) => { if (r.target.classList && r.target.classList.contains("mc-chart")) draw(r.target); });
  }).observe(document.documentElement, { subtree: true, attributes: true, attributeFilter: ["data-chart-url"] });
})();
