// The live dashboard: draws the per-minute chart with uPlot and applies the "summary" server-sent events
// (the api.admin_dashboard JSON, the same for every viewer) to the figures the page rendered on load.
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root || typeof EventSource === "undefined") { return; }
  var currency = root.dataset.currency || "EUR";
  var locale = root.dataset.locale || "en";
  var timeZone = root.dataset.timeZone || "UTC";
  var moneyFormat = new Intl.NumberFormat(locale, { style: "currency", currency: currency });
  var numberFormat = new Intl.NumberFormat(locale);
  var chartBox = document.getElementById("chart");
  var plot = null;

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
    var data = JSON.parse(document.getElementById("chart-data").textContent || "{}");
    return [data.x || [], (data.sales || []).map(function (c) { return c / 100; }),
            (data.topups || []).map(function (c) { return c / 100; })];
  }

  function drawChart(data) {
    if (typeof uPlot === "undefined" || !chartBox) { return; }
    var axisMoney = function (u, values) { return values.map(function (v) { return moneyFormat.format(v); }); };
    var options = {
      width: Math.max(chartBox.clientWidth, 300),
      height: 280,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), timeZone); },
      series: [
        {},
        { label: "Sales", stroke: "#1d4ed8", fill: "rgba(29, 78, 216, 0.12)", width: 2,
          value: function (u, v) { return v == null ? "" : moneyFormat.format(v); } },
        { label: "Top-ups", stroke: "#15803d", width: 2,
          value: function (u, v) { return v == null ? "" : moneyFormat.format(v); } }
      ],
      axes: [{}, { values: axisMoney, size: 80 }]
    };
    plot = new uPlot(options, data, chartBox);
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(chartBox.clientWidth, 300), height: 280 });
    });
  }

  function apply(summary) {
    set("revenue-today", money(summary.revenue_today));
    set("terminals-seen", numberFormat.format(summary.terminals_seen_5min || 0));
    var lag = summary.signing_lag;
    if (lag && typeof lag === "object") {
      set("signing-pending", numberFormat.format(lag.pending || 0));
      set("signing-oldest", lag.oldest_ms == null ? "–" : Math.round(lag.oldest_ms / 1000) + " s");
    }
    var outage = document.getElementById("tse-outage");
    if (outage) { outage.hidden = !summary.tse_outage; }
    var list = document.getElementById("queue-counts");
    if (list) {
      while (list.firstChild) { list.removeChild(list.firstChild); }
      var kinds = Object.keys(summary.queue_counts || {});
      if (!kinds.length) {
        var none = document.createElement("li"); none.className = "muted"; none.textContent = "nothing open";
        list.appendChild(none);
      }
      kinds.forEach(function (kind) {
        var item = document.createElement("li");
        var link = document.createElement("a");
        link.href = root.dataset.liveUrl.replace(/live$/, "queue");
        link.textContent = kind;
        item.appendChild(link);
        item.appendChild(document.createTextNode(": " + summary.queue_counts[kind]));
        list.appendChild(item);
      });
    }
    if (plot) { plot.setData(columns(summary.series)); }
    set("live-status", "live · " + new Date().toLocaleTimeString(locale));
  }

  drawChart(initialColumns());
  var source = new EventSource(root.dataset.liveUrl);
  source.addEventListener("summary", function (event) { apply(JSON.parse(event.data)); });
  source.addEventListener("signed-out", function () { source.close(); window.location.reload(); });
  source.onerror = function () { set("live-status", "reconnecting …"); };
})();
