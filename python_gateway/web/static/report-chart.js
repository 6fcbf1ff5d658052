// A report's chart (uPlot): the first column is the time axis, every money column a series of bars from 0 (cents).
// Times in the page's locale and the event's time zone (chart-time.js).
(function () {
  "use strict";
  var box = document.getElementById("report-chart");
  var source = document.getElementById("report-chart-data");
  if (!box || !source || typeof uPlot === "undefined") { return; }
  var data = JSON.parse(source.textContent || "{}");
  if (!data.x || !data.series || !data.series.length) { return; }
  var locale = box.dataset.locale || "en";
  var money = new Intl.NumberFormat(locale, { style: "currency", currency: box.dataset.currency || "EUR" });
  var timeZone = box.dataset.timeZone || "UTC";
  var times = window.festpayTime ? window.festpayTime(locale, timeZone) : null;
  var colours = ["#1d4ed8", "#15803d", "#b45309", "#7c3aed", "#be123c"];
  var series = [times ? { value: times.legend } : {}];
  var columns = [data.x];
  // Hourly sums are bars from 0, not a line between totals (a line makes a quiet hour look like a collapse).
  var bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8, 60] }) : null;
  data.series.forEach(function (s, i) {
    var colour = colours[i % colours.length];
    series.push({ label: s.label, stroke: colour, fill: bars ? colour + "99" : undefined, width: bars ? 1 : 2,
                  paths: bars || undefined, points: { show: !bars },
                  value: function (u, v) { return v == null ? "" : money.format(v); } });
    columns.push(s.values.map(function (c) { return c == null ? null : c / 100; }));
  });
  // With fewer than two points uPlot would stretch the time axis over years: show an hour either side instead.
  var scales = data.x.length < 2 ? { x: { time: true, range: function () {
    var t = data.x.length ? data.x[0] : Math.round(Date.now() / 1000);
    return [t - 3600, t + 3600];
  } } } : { x: { time: true } };
  scales.y = { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } };
  var options = {
    width: Math.max(box.clientWidth, 280), height: 280, series: series, scales: scales,
    axes: [times ? { values: times.axis, size: 56 } : {},
           { size: 80, values: function (u, vs) { return vs.map(function (v) { return money.format(v); }); } }]
  };
  if (times) { options.tzDate = times.tzDate; }
  var plot = new uPlot(options, columns, box);
  window.addEventListener("resize", function () { plot.setSize({ width: Math.max(box.clientWidth, 280), height: 280 }); });
})();
