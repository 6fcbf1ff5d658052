// A report's chart (uPlot): the first column is the time axis, every numeric column a series (cents).
(function () {
  "use strict";
  var box = document.getElementById("report-chart");
  var source = document.getElementById("report-chart-data");
  if (!box || !source || typeof uPlot === "undefined") { return; }
  var data = JSON.parse(source.textContent || "{}");
  if (!data.x || !data.series || !data.series.length) { return; }
  var money = new Intl.NumberFormat(box.dataset.locale || "en",
                                    { style: "currency", currency: box.dataset.currency || "EUR" });
  var timeZone = box.dataset.timeZone || "UTC";
  var colours = ["#1d4ed8", "#15803d", "#b45309", "#7c3aed", "#be123c"];
  var series = [{}];
  var columns = [data.x];
  data.series.forEach(function (s, i) {
    series.push({ label: s.label, stroke: colours[i % colours.length], width: 2,
                  value: function (u, v) { return v == null ? "" : money.format(v); } });
    columns.push(s.values.map(function (c) { return c == null ? null : c / 100; }));
  });
  // With fewer than two points uPlot would stretch the time axis over years: show an hour either side instead.
  var scales = data.x.length < 2 ? { x: { time: true, range: function () {
    var t = data.x.length ? data.x[0] : Math.round(Date.now() / 1000);
    return [t - 3600, t + 3600];
  } } } : { x: { time: true } };
  var plot = new uPlot({
    width: Math.max(box.clientWidth, 300), height: 280, series: series, scales: scales,
    tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), timeZone); },
    axes: [{}, { size: 80, values: function (u, vs) { return vs.map(function (v) { return money.format(v); }); } }]
  }, columns, box);
  window.addEventListener("resize", function () { plot.setSize({ width: Math.max(box.clientWidth, 300), height: 280 }); });
})();
