// The live dashboard: draws the per-minute chart with uPlot and applies the "summary" server-sent events
// (the api.admin_dashboard JSON, the same for every viewer) to the figures the page rendered on load.
// Money and numbers in the page's locale; times in the event's time zone (data-time-zone), never the browser's.
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root || typeof EventSource === "undefined") { return; }
  var currency = root.dataset.currency || "EUR";
  var locale = root.dataset.locale || "en";
  var timeZone = root.dataset.timeZone || "UTC";
  var moneyFormat = new Intl.NumberFormat(locale, { style: "currency", currency: currency });
  var numberFormat = new Intl.NumberFormat(locale);
  var times = window.festpayTime ? window.festpayTime(locale, timeZone) : null;
  var kindLabels = readJson("queue-kinds");
  var chartBox = document.getElementById("chart");
  var plot = null;

  function readJson(id) {
    var el = document.getElementById(id);
    try { return el ? JSON.parse(el.textContent || "{}") : {}; } catch (e) { return {}; }
  }
  function money(cents) { return moneyFormat.format((cents || 0) / 100); }
  function set(id, text) { var el = document.getElementById(id); if (el) { el.textContent = text; } }

  function columns(series) {
    var xs = [], sales = [], topups = [];
    (series || []).forEach(function (point) {
      xs.push(Math.round(Date.parse(point.minute) / 1000));
      sales.push((point.sales || 0) / 100);
      topups.push((point.topups || 0) / 100);
    });
    return [xs, sales, topups];
  }

  function initialColumns() {
    var data = readJson("chart-data");
    return [data.x || [], (data.sales || []).map(function (c) { return c / 100; }),
            (data.topups || []).map(function (c) { return c / 100; })];
  }

  function drawChart(data) {
    if (typeof uPlot === "undefined" || !chartBox) { return; }
    var axisMoney = function (u, values) { return values.map(function (v) { return moneyFormat.format(v); }); };
    var options = {
      width: Math.max(chartBox.clientWidth, 280),
      height: 280,
      series: [
        times ? { value: times.legend } : {},
        { label: "Sales", stroke: "#1d4ed8", fill: "rgba(29, 78, 216, 0.12)", width: 2,
          value: function (u, v) { return v == null ? "" : moneyFormat.format(v); } },
        { label: "Top-ups", stroke: "#15803d", width: 2,
          value: function (u, v) { return v == null ? "" : moneyFormat.format(v); } }
      ],
      axes: [times ? { values: times.axis, size: 56 } : {}, { values: axisMoney, size: 80 }]
    };
    if (times) { options.tzDate = times.tzDate; }
    plot = new uPlot(options, data, chartBox);
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(chartBox.clientWidth, 280), height: 280 });
    });
  }

  function queueCounts(counts) {
    var list = document.getElementById("queue-counts");
    if (!list) { return; }
    while (list.firstChild) { list.removeChild(list.firstChild); }
    var kinds = Object.keys(counts || {}).filter(function (kind) { return counts[kind]; });
    if (!kinds.length) {
      var none = document.createElement("li"); none.className = "muted"; none.textContent = "nothing open";
      list.appendChild(none);
    }
    kinds.forEach(function (kind) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = root.dataset.queueUrl + "#kind-" + kind;
      link.textContent = kindLabels[kind] || kind;
      item.appendChild(link);
      item.appendChild(document.createTextNode(": " + numberFormat.format(counts[kind])));
      list.appendChild(item);
    });
  }

  function apply(summary) {
    set("revenue-today", money(summary.revenue_today));
    set("terminals-seen", numberFormat.format(summary.terminals_seen_5min || 0));
    var lag = summary.signing_lag;
    if (lag && typeof lag === "object") {
      set("signing-pending", numberFormat.format(lag.pending || 0));
      set("signing-oldest", lag.oldest_ms == null ? "–" : numberFormat.format(Math.round(lag.oldest_ms / 1000)) + " s");
    }
    var outage = document.getElementById("tse-outage");
    if (outage) { outage.hidden = !summary.tse_outage; }
    queueCounts(summary.queue_counts);
    if (plot) { plot.setData(columns(summary.series)); }
    var at = summary.at ? new Date(summary.at) : new Date();
    set("live-status", "live · " + (times ? times.clock(at) : at.toISOString()));
  }

  drawChart(initialColumns());
  var source = new EventSource(root.dataset.liveUrl);
  source.addEventListener("summary", function (event) { apply(JSON.parse(event.data)); });
  source.addEventListener("signed-out", function () { source.close(); window.location.reload(); });
  source.onerror = function () { set("live-status", "reconnecting …"); };
})();
