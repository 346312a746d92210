// Draws the plots of a backlog report from REPORT (report.go's JSON) with
// uPlot. Every chart is kept in window.backlogCharts, with its data, so a
// reader (or a test) can check the plotted points.
"use strict";
(function () {
  const charts = [];
  window.backlogCharts = charts;
  const plots = document.getElementById("plots");
  const width = Math.min(1100, document.documentElement.clientWidth - 40);
  const markColor = { critical: "rgba(204,0,0,0.13)", warning: "rgba(238,153,0,0.13)" };

  // Shades the stretches where doctor found trouble.
  function marks(listener) {
    return {
      hooks: {
        drawClear: [(u) => {
          const ctx = u.ctx;
          for (const m of REPORT.marks || []) {
            if (listener && m.listener && m.listener !== listener) continue;
            const x0 = u.valToPos(Date.parse(m.from) / 1000, "x", true);
            const x1 = Math.max(x0 + 2, u.valToPos(Date.parse(m.to) / 1000, "x", true));
            ctx.fillStyle = markColor[m.severity] || markColor.warning;
            ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
          }
        }],
      },
    };
  }

  function chart(parent, id, title, t, series, opts) {
    const box = document.createElement("div");
    box.className = "chart";
    box.id = id;
    const h = document.createElement("h3");
    h.textContent = title;
    box.appendChild(h);
    parent.appendChild(box);
    const data = [t].concat(series.map((s) => s.values));
    const u = new uPlot({
      width: width, height: 220,
      plugins: [marks(opts && opts.listener)],
      scales: { x: { time: true } },
      axes: [{}, { label: (opts && opts.unit) || "" }],
      series: [{}].concat(series.map((s) => ({
        label: s.label, stroke: s.color, width: s.width || 1.5, dash: s.dash,
        // A peak covers the interval before its point: step before it.
        paths: s.steps ? uPlot.paths.stepped({ align: -1 }) : undefined,
        spanGaps: false,
      }))),
    }, data, box);
    charts.push({ id: id, title: title, labels: series.map((s) => s.label), data: data, plot: u });
  }

  function section(title) {
    const h = document.createElement("h2");
    h.textContent = title;
    plots.appendChild(h);
    const d = document.createElement("div");
    d.className = "charts";
    plots.appendChild(d);
    return d;
  }

  const stageColors = { "syn": "#c00", "syn-queue": "#80c", "syn-backlog": "#08c", "ack": "#e60", "cookie": "#999" };
  for (const l of REPORT.listeners || []) {
    const id = "l-" + l.netns + "-" + l.inode;
    const procs = (l.processes || []).map((p) => p.comm + "(" + p.pid + ")").join(", ");
    const box = section(l.listener + " in " + l.namespace + (procs ? " — " + procs : ""));
    box.id = id;
    chart(box, id + "-accept", "accept queue, its peak per interval, and the backlog", l.t, [
      { label: "peak", values: l.accept_queue_peak, color: "#c00", steps: true },
      { label: "accept queue", values: l.accept_queue, color: "#36c" },
      { label: "backlog", values: l.backlog, color: "#222", dash: [6, 4], width: 1 },
    ], { listener: l.listener, unit: "connections" });
    chart(box, id + "-syn", "SYN queue and drops", l.t, [
      { label: "SYN queue", values: l.syn_queue, color: "#80c" },
      { label: "drops/s (packets)", values: l.drops_per_second, color: "#e60" },
    ], { listener: l.listener });
    if (l.events) {
      chart(box, id + "-events", "eBPF drop events per second, by stage", l.t,
        Object.keys(stageColors).filter((s) => l.events[s]).map((s) => ({ label: s, values: l.events[s], color: stageColors[s] })),
        { listener: l.listener, unit: "events/s" });
      const waited = (l.wait_p50_ms || []).some((v) => v !== null);
      if (waited) chart(box, id + "-wait", "accept-queue wait of the connections accepted in each interval", l.t, [
        { label: "p50", values: l.wait_p50_ms, color: "#36c" },
        { label: "p90", values: l.wait_p90_ms, color: "#e90" },
        { label: "p99", values: l.wait_p99_ms, color: "#c00" },
      ], { listener: l.listener, unit: "ms" });
    }
  }
  const palette = ["#c00", "#e60", "#80c", "#36c", "#090", "#999", "#0aa", "#a50"];
  for (const ns of REPORT.namespaces || []) {
    const names = Object.keys(ns.rates).sort();
    if (names.length === 0) continue;
    const box = section("namespace " + ns.name + ": TcpExt counters per second");
    chart(box, "ns-" + ns.inode, "TcpExt counters per second", ns.t,
      names.map((n, i) => ({ label: n, values: ns.rates[n], color: palette[i % palette.length] })), { unit: "per second" });
  }
  document.body.dataset.charts = String(charts.length);
})();
