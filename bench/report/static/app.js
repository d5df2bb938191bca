// seambench dashboard: draws plots from window.SEAMBENCH_DATA (data.js).
// Plots are drawn lazily as they scroll into view so that 100+ of them with
// 1,000 points each do not stall the page; "?all=1" draws all at once (tests).
(function () {
  "use strict";
  var D = window.SEAMBENCH_DATA;
  var status = document.getElementById("sb-status");
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  var eager = /[?&]all=1/.test(location.search);
  var rendered = {};   // idx -> true when the current filter state is drawn
  var points = 0;

  // Filters can be preset from the address: index.html?leaf=vp_info,vp_rd&machine=box-a
  var params = new URLSearchParams(location.search);
  var filters = {};
  document.querySelectorAll("#filters fieldset").forEach(function (fs) {
    var key = fs.dataset.filter;
    filters[key] = new Set();
    var preset = params.get(key) ? params.get(key).split(",") : null;
    fs.querySelectorAll("input").forEach(function (i) {
      if (preset) i.checked = preset.indexOf(i.value) >= 0;
      if (i.checked) filters[key].add(i.value);
      i.addEventListener("change", function () {
        if (i.checked) filters[key].add(i.value); else filters[key].delete(i.value);
        applyFilters(key === "machine");
      });
    });
  });

  function passes(el) {
    return ["conv", "backend", "leaf"].every(function (k) {
      return !el.dataset[k] || filters[k].has(el.dataset[k]);
    }) && (!el.dataset.machine || filters.machine.has(el.dataset.machine));
  }

  function fmt(v) { return v == null ? "–" : (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(4)); }

  function draw(card) {
    var idx = +card.dataset.idx, b = D.benchmarks[idx], div = card.querySelector(".plot");
    var traces = [], shapes = [];
    D.machines.forEach(function (m, mi) {
      var s = b.series[m];
      if (!s || !filters.machine.has(m)) return;
      var x = [], med = [], lo = [], hi = [], text = [], prev = null;
      for (var i = 0; i < s.med.length; i++) {
        if (s.med[i] == null) continue;
        var c = D.commits[i];
        x.push(i); med.push(s.med[i]); lo.push(s.lo[i]); hi.push(s.hi[i]);
        var delta = prev ? " (" + (s.med[i] >= prev ? "+" : "") + ((s.med[i] / prev - 1) * 100).toFixed(1) +
          "% vs previous)" : "";
        text.push(c.sha.slice(0, 10) + " " + c.subject.slice(0, 70).replace(/&/g, "&amp;").replace(/</g, "&lt;") +
          "<br>" + m + ": median " + fmt(s.med[i]) + " " + D.unit + delta + "<br>95% CI [" + fmt(s.lo[i]) +
          ", " + fmt(s.hi[i]) + "], n=" + s.n[i]);
        prev = s.med[i];
      }
      var color = COLORS[mi % COLORS.length];
      traces.push({x: x, y: hi, mode: "lines", line: {width: 0}, hoverinfo: "skip",
                   showlegend: false, legendgroup: m});
      traces.push({x: x, y: lo, mode: "lines", line: {width: 0}, fill: "tonexty",
                   fillcolor: color + "33", hoverinfo: "skip", showlegend: false, legendgroup: m});
      traces.push({x: x, y: med, mode: "lines+markers", name: m, legendgroup: m,
                   line: {color: color, width: 1.5}, marker: {size: 4, color: color},
                   text: text, hovertemplate: "%{text}<extra></extra>"});
      if (s.cc && s.cc.length) {  // commits that changed this benchmark's measured code
        traces.push({x: s.cc, y: s.cc.map(function (i) { return s.med[i]; }), mode: "markers",
                     name: m + ": code changed", legendgroup: m, showlegend: false, hoverinfo: "skip",
                     marker: {symbol: "diamond-open", size: 10, color: color}});
      }
      points += x.length;
    });
    D.changes.forEach(function (ch) {
      if (ch.benchmark !== b.name || !filters.machine.has(ch.machine)) return;
      shapes.push({type: "line", xref: "x", yref: "paper", x0: ch.to_idx - 0.5, x1: ch.to_idx - 0.5,
                   y0: 0, y1: 1, line: {dash: "dash", width: 1,
                   color: ch.kind === "regression" ? "#c0392b" : "#1e8449"}});
    });
    // Commits that failed to build or run on a shown machine: light grey columns.
    var failedIdx = {};
    D.machines.forEach(function (m) {
      if (filters.machine.has(m)) (D.failed[m] || []).forEach(function (i) { failedIdx[i] = true; });
    });
    Object.keys(failedIdx).forEach(function (i) {
      shapes.push({type: "rect", xref: "x", yref: "paper", x0: +i - 0.4, x1: +i + 0.4, y0: 0, y1: 1,
                   fillcolor: "#999", opacity: 0.15, line: {width: 0}, layer: "below"});
    });
    var xaxis = {title: {text: "commit (history order, oldest left)"}, range: [-0.5, D.commits.length - 0.5],
                 zeroline: false};
    if (D.commits.length <= 40) {  // few commits: label each with its short sha
      xaxis.tickvals = D.commits.map(function (c, i) { return i; });
      xaxis.ticktext = D.commits.map(function (c) { return c.sha.slice(0, 7); });
      xaxis.tickangle = -60; xaxis.tickfont = {size: 9, family: "monospace"};
      xaxis.title.text = "";
    }
    // At least +-1.5% around the data: jitter of a tenth of a cycle must not look like a cliff.
    var yaxis = {title: {text: D.unit + " / call"}};
    var ys = [];
    traces.forEach(function (t) { t.y.forEach(function (v) { if (v != null) ys.push(v); }); });
    if (ys.length) {
      var ymin = Math.min.apply(null, ys), ymax = Math.max.apply(null, ys), mid = (ymin + ymax) / 2;
      var half = Math.max((ymax - ymin) / 2 * 1.1, Math.abs(mid) * 0.015);
      yaxis.range = [mid - half, mid + half];
    }
    Plotly.newPlot(div, traces, {
      margin: {l: 55, r: 10, t: 8, b: D.commits.length <= 40 ? 60 : 35}, showlegend: D.machines.length > 1,
      legend: {orientation: "h", y: 1.12}, hovermode: "closest", shapes: shapes,
      xaxis: xaxis,
      yaxis: yaxis
    }, {displayModeBar: false, responsive: true});
    rendered[idx] = true;
    if (!status.dataset.firstPlotMs) status.dataset.firstPlotMs = Math.round(performance.now());
    status.dataset.rendered = Object.keys(rendered).length;
    status.dataset.points = points;
  }

  var observer = null;
  if (!eager && "IntersectionObserver" in window) {
    observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting && !rendered[e.target.dataset.idx] && !e.target.classList.contains("hidden")) {
          draw(e.target);
        }
      });
    }, {rootMargin: "300px"});
  }

  function applyFilters(machineChanged) {
    document.querySelectorAll("#changes-table tbody tr[data-conv], #drift-table tbody tr[data-conv], #failed tr[data-machine]").forEach(function (tr) {
      tr.classList.toggle("hidden", !passes(tr));
    });
    document.querySelectorAll(".card").forEach(function (card) {
      var show = passes(card);
      card.classList.toggle("hidden", !show);
      if (machineChanged && rendered[card.dataset.idx]) {
        Plotly.purge(card.querySelector(".plot"));
        delete rendered[card.dataset.idx];
        if (observer) { observer.unobserve(card); observer.observe(card); }
      }
      if (show && !observer && !rendered[card.dataset.idx]) draw(card);
    });
    drawHeat();
  }

  function drawHeat() {
    var div = document.getElementById("heatmap");
    var machine = D.machines.filter(function (m) { return filters.machine.has(m); })[0];
    document.getElementById("heat-machine").textContent = machine || "(no machine selected)";
    var convs = [], backends = [];
    var cells = {};
    if (machine) {
      var last = -1;  // latest commit with any data on this machine
      D.benchmarks.forEach(function (b) {
        var s = b.series[machine];
        if (!s) return;
        for (var i = s.med.length - 1; i > last; i--) if (s.med[i] != null) { last = i; break; }
      });
      D.benchmarks.forEach(function (b) {
        var s = b.series[machine];
        if (!s || last < 0 || s.med[last] == null || !filters.leaf.has(b.leaf) ||
            !filters.conv.has(b.conv) || !filters.backend.has(b.backend)) return;
        var key = b.conv + "\u0000" + b.backend;
        (cells[key] = cells[key] || []).push(Math.log(s.med[last]));
        if (convs.indexOf(b.conv) < 0) convs.push(b.conv);
        if (backends.indexOf(b.backend) < 0) backends.push(b.backend);
      });
      if (last >= 0) document.getElementById("heat-machine").textContent =
        machine + " (commit " + D.commits[last].sha.slice(0, 10) + " " + D.commits[last].subject + ")";
    }
    convs.sort(); backends.sort();
    var z = convs.map(function (c) {
      return backends.map(function (bk) {
        var v = cells[c + "\u0000" + bk];
        return v ? Math.exp(v.reduce(function (a, x) { return a + x; }, 0) / v.length) : null;
      });
    });
    var text = z.map(function (row) { return row.map(fmt); });
    Plotly.react(div, [{type: "heatmap", x: backends, y: convs, z: z, text: text,
      texttemplate: "%{text}", colorscale: "YlOrRd", reversescale: true, colorbar: {title: {text: D.unit}},
      hovertemplate: "%{y} / %{x}: %{text} " + D.unit + "<extra></extra>"}],
      {margin: {l: 140, r: 10, t: 10, b: 60}}, {displayModeBar: false, responsive: true});
  }

  applyFilters(false);
  if (observer) document.querySelectorAll(".card").forEach(function (c) { observer.observe(c); });
  // ?hover=N shows the hover label of point N of the first plot (lets a headless test read it).
  if (params.get("hover") && eager) {
    var first = document.querySelector(".card:not(.hidden) .plot");
    if (first) Plotly.Fx.hover(first, [{curveNumber: 2, pointNumber: +params.get("hover")}]);
  }
  status.dataset.readyMs = Math.round(performance.now());
  status.dataset.ready = "1";
})();
