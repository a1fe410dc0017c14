// A message's reach, live: each server-sent "reach" event is the same
// k-anonymous report as GET /messages/{id}/reach. Charts are inline SVG
// drawn here (no library, no CDN). A suppressed figure (under k) is never
// drawn as a number: the line breaks, the bar reads "< k".
"use strict";
(() => {
  const box = document.getElementById("dashboard");
  if (!box) return;
  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = ["#0b57a4", "#b3541e", "#17663a", "#6b3fa0", "#8a4b00", "#a3141c", "#505a66", "#00737a"];
  const labels = JSON.parse(box.dataset.labels);
  const hidden = box.dataset.suppressedLabel;
  const series = []; // [{at, reached: {channel: number|null}}]

  const el = (name, attrs, text) => {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const clear = (svg) => { while (svg.firstChild) svg.removeChild(svg.firstChild); };
  const value = (cell) => (cell && !cell.suppressed ? cell.value : null);

  function lineChart(svg, legend) {
    clear(svg);
    legend.textContent = "";
    const channels = Object.keys(series.length ? series[series.length - 1].reached : {});
    const numbers = series.flatMap((s) => Object.values(s.reached)).filter((v) => v !== null);
    const top = Math.max(1, ...numbers);
    const [x0, x1, y0, y1] = [34, 312, 160, 12];
    svg.appendChild(el("line", { x1: x0, y1: y0, x2: x1, y2: y0, stroke: "#7d8896" }));
    svg.appendChild(el("text", { x: 2, y: y0 }, "0"));
    if (numbers.length) svg.appendChild(el("text", { x: 2, y: y1 + 4 }, String(top)));
    else svg.appendChild(el("text", { x: x0 + 8, y: (y0 + y1) / 2 }, `${labels.reached}: ${hidden}`));
    const t0 = series.length ? series[0].at : 0;
    const span = Math.max(1, (series.length ? series[series.length - 1].at : 0) - t0);
    channels.forEach((channel, i) => {
      const colour = COLOURS[i % COLOURS.length];
      let path = "";
      let pen = false;
      series.forEach((s) => {
        const v = s.reached[channel];
        if (v === null || v === undefined) { pen = false; return; }
        const x = series.length > 1 ? x0 + ((s.at - t0) / span) * (x1 - x0) : (x0 + x1) / 2;
        const y = y0 - (v / top) * (y0 - y1);
        path += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)} `;
        pen = true;
        svg.appendChild(el("circle", { cx: x, cy: y, r: 2.5, fill: colour }));
      });
      if (path) svg.appendChild(el("path", { d: path, fill: "none", stroke: colour, "stroke-width": 2 }));
      const last = series[series.length - 1].reached[channel];
      const item = document.createElement("span");
      item.append(swatchSvg(colour), ` ${channel}: ${last === null ? hidden : last}`);
      legend.appendChild(item);
    });
  }

  function swatchSvg(colour) {
    const svg = el("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true" });
    svg.appendChild(el("rect", { width: 12, height: 12, rx: 2, fill: colour }));
    return svg;
  }

  function barChart(svg, legend, rows) {
    clear(svg);
    legend.textContent = "";
    const metrics = ["volunteers_suggested", "relays", "reached"];
    const names = Object.keys(rows);
    if (!names.length) {
      svg.setAttribute("viewBox", "0 0 320 36");
      svg.appendChild(el("text", { x: 10, y: 22 }, labels.empty));
      return;
    }
    const numbers = names.flatMap((n) => metrics.map((m) => value(rows[n][m]))).filter((v) => v !== null);
    const top = Math.max(1, ...numbers);
    const bar = 12;
    const band = 18 + metrics.length * (bar + 2);
    svg.setAttribute("viewBox", `0 0 320 ${names.length * band + 4}`);
    names.forEach((name, r) => {
      const y = 4 + r * band;
      svg.appendChild(el("text", { x: 2, y: y + 11 }, name));
      metrics.forEach((metric, j) => {
        const v = value(rows[name][metric]);
        const by = y + 16 + j * (bar + 2);
        if (v === null) { // hidden under k: an outlined stub, never a length that tells the figure
          svg.appendChild(el("rect", { x: 2, y: by, width: 24, height: bar, fill: "#fff", stroke: COLOURS[j],
                                       "stroke-dasharray": "3 2" }));
          svg.appendChild(el("text", { x: 30, y: by + bar - 2 }, hidden));
          return;
        }
        const w = Math.max(2, (v / top) * 250);
        svg.appendChild(el("rect", { x: 2, y: by, width: w, height: bar, fill: COLOURS[j] }));
        svg.appendChild(el("text", { x: 6 + w, y: by + bar - 2 }, String(v)));
      });
    });
    metrics.forEach((metric, j) => {
      const item = document.createElement("span");
      item.append(swatchSvg(COLOURS[j]), ` ${labels[metric]}`);
      legend.appendChild(item);
    });
  }

  function draw(at, reach) {
    const reached = {};
    for (const [channel, row] of Object.entries(reach.channels)) reached[channel] = value(row.reached);
    series.push({ at, reached });
    lineChart(document.getElementById("chart-time"), document.getElementById("legend-time"));
    barChart(document.getElementById("chart-interest"), document.getElementById("legend-interest"), reach.by_interest);
    barChart(document.getElementById("chart-region"), document.getElementById("legend-region"), reach.by_region);
  }

  // The past, from GET /messages/{id}/reach/timeline: a point each time a
  // channel grew by k; channels without one yet stay "< k" (null).
  const timeline = JSON.parse(box.dataset.timeline).channels;
  const latest = Object.fromEntries(Object.keys(timeline).map((channel) => [channel, null]));
  Object.entries(timeline)
    .flatMap(([channel, points]) => points.map((p) => ({ channel, at: Date.parse(p.at) / 1000, reached: p.reached })))
    .sort((a, b) => a.at - b.at)
    .forEach((p) => { latest[p.channel] = p.reached; series.push({ at: p.at, reached: { ...latest } }); });
  draw(Date.now() / 1000, JSON.parse(box.dataset.initial));
  const live = document.getElementById("live");
  const source = new EventSource(box.dataset.eventsUrl);
  source.addEventListener("open", () => { live.textContent = labels.live; live.className = "badge done"; });
  source.addEventListener("error", () => { live.textContent = labels.reconnecting; live.className = "badge failed"; });
  source.addEventListener("reach", (event) => {
    const data = JSON.parse(event.data);
    draw(data.at, data.reach);
  });
})();
