// Times of the charts (uPlot) as the page writes them: in the page's locale (de or en) and the event's time zone,
// not the browser's.  festpayTime(locale, timeZone) gives the x axis labels, the legend's time and clock formats.
(function () {
  "use strict";
  window.festpayTime = function (locale, timeZone) {
    function format(options) {
      try {
        return new Intl.DateTimeFormat(locale, Object.assign({ timeZone: timeZone }, options));
      } catch (e) {  // an unknown zone: UTC rather than nothing
        return new Intl.DateTimeFormat(locale, Object.assign({ timeZone: "UTC" }, options));
      }
    }
    var clock = format({ hour: "numeric", minute: "2-digit" });
    var day = format({ day: "numeric", month: "short" });
    var dayKey = format({ year: "numeric", month: "2-digit", day: "2-digit" });
    var full = format({ dateStyle: "medium", timeStyle: "short" });
    var seconds = format({ hour: "numeric", minute: "2-digit", second: "2-digit" });
    function at(ts) { return new Date(ts * 1000); }
    return {
      // uPlot axis values: the time of day; the date below the first tick of each day (ticks a day apart: the date).
      axis: function (u, splits, axisIdx, space, incr) {
        var previous = null;
        return splits.map(function (ts) {
          if (ts == null) { return ""; }
          var d = at(ts), key = dayKey.format(d), text;
          if (incr >= 86400) {
            text = day.format(d);
          } else {
            text = clock.format(d);
            if (key !== previous) { text += "\n" + day.format(d); }
          }
          previous = key;
          return text;
        });
      },
      // uPlot series[0].value: the legend's time of the point under the cursor.
      legend: function (u, ts) { return ts == null ? "" : full.format(at(ts)); },
      // uPlot tzDate: ticks on whole hours and days of the event's zone.
      tzDate: function (ts) {
        try { return uPlot.tzDate(at(ts), timeZone); } catch (e) { return at(ts); }
      },
      clock: function (date) { return seconds.format(date); }
    };
  };
})();
