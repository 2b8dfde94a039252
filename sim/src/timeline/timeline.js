// The timeline's zoom, pan and tooltip. Every element placed in time carries data-t (and data-d for a duration),
// in nanoseconds; zooming moves them. No network, no library.
(function () {
  "use strict";
  var root = document.documentElement;
  window.addEventListener("error", function (e) {
    root.setAttribute("data-script-error", String(e.message || e));
  });
  var svg = document.getElementById("timeline");
  var lines = JSON.parse(document.getElementById("trace-lines").textContent);
  var tip = document.getElementById("tip");
  var end = Number(svg.getAttribute("data-end"));
  var left = Number(svg.getAttribute("data-left"));
  var width = Number(svg.getAttribute("data-width"));
  var top = Number(svg.getAttribute("data-top"));
  var bottom = Number(svg.getAttribute("data-bottom"));
  var axis = document.getElementById("axis");
  var bins = document.getElementById("bins");
  var records = document.getElementById("records");
  var binNs = Number(records.getAttribute("data-bin"));
  var placed = Array.prototype.slice.call(document.querySelectorAll("#plot [data-t]"));
  var view = { from: 0, to: end };
  var NS = "http://www.w3.org/2000/svg";

  function x(t) {
    return left + ((t - view.from) / (view.to - view.from)) * width;
  }

  function step(range) {
    var raw = Math.max(range / 10, 1);
    var s = 1;
    for (;;) {
      for (var f of [1, 2, 5]) {
        if (s * f >= raw) return s * f;
      }
      s *= 10;
    }
  }

  function label(t, s) {
    var decimals = s >= 1e6 ? 0 : s >= 1e5 ? 1 : s >= 1e4 ? 2 : 3;
    return (t / 1e6).toFixed(decimals) + " ms";
  }

  function drawAxis() {
    while (axis.firstChild) axis.removeChild(axis.firstChild);
    var s = step(view.to - view.from);
    for (var t = Math.ceil(view.from / s) * s; t <= view.to; t += s) {
      var line = document.createElementNS(NS, "line");
      line.setAttribute("class", "tick");
      line.setAttribute("x1", x(t));
      line.setAttribute("x2", x(t));
      line.setAttribute("y1", top - 10);
      line.setAttribute("y2", bottom);
      axis.appendChild(line);
      var text = document.createElementNS(NS, "text");
      text.setAttribute("class", "tick");
      text.setAttribute("x", x(t));
      text.setAttribute("y", top - 14);
      text.textContent = label(t, s);
      axis.appendChild(text);
    }
  }

  function layout() {
    var scale = width / (view.to - view.from);
    for (var i = 0; i < placed.length; i++) {
      var el = placed[i];
      var t = Number(el.getAttribute("data-t"));
      var px = x(t);
      var tag = el.tagName;
      if (tag === "line") {
        el.setAttribute("x1", px);
        el.setAttribute("x2", px);
      } else if (tag === "circle") {
        el.setAttribute("cx", px);
      } else if (tag === "text") {
        var shift = el.getAttribute("text-anchor") === "end" ? -4 : el.classList.contains("span-label") ? 2 : 4;
        el.setAttribute("x", px + shift);
        if (el.hasAttribute("data-d")) {
          el.style.display = Number(el.getAttribute("data-d")) * scale < 14 ? "none" : "";
        }
      } else if (el.hasAttribute("data-d")) {
        el.setAttribute("x", px);
        el.setAttribute("width", Math.max(Number(el.getAttribute("data-d")) * scale, 1.5));
      } else {
        el.setAttribute("x", px);
      }
    }
    // Zoomed in until a bin spans more than a few pixels: each records event on its own.
    var fine = binNs * scale > 6;
    bins.style.display = fine ? "none" : "";
    records.style.display = fine ? "" : "none";
    drawAxis();
  }

  function zoom(factor, at) {
    var range = view.to - view.from;
    var next = Math.min(Math.max(range * factor, 1000), end);
    var anchor = at === undefined ? view.from + range / 2 : at;
    var ratio = (anchor - view.from) / range;
    view.from = Math.max(0, Math.min(anchor - ratio * next, end - next));
    view.to = view.from + next;
    layout();
  }

  function timeAt(clientX) {
    var box = svg.getBoundingClientRect();
    var px = ((clientX - box.left) / box.width) * Number(svg.getAttribute("width"));
    return view.from + ((px - left) / width) * (view.to - view.from);
  }

  function fit() {
    view = { from: 0, to: end };
    layout();
  }

  svg.addEventListener(
    "wheel",
    function (e) {
      e.preventDefault();
      zoom(e.deltaY < 0 ? 0.8 : 1.25, timeAt(e.clientX));
    },
    { passive: false }
  );
  var drag = null;
  svg.addEventListener("mousedown", function (e) {
    drag = { x: e.clientX, from: view.from, to: view.to };
  });
  window.addEventListener("mouseup", function () {
    drag = null;
  });
  svg.addEventListener("mousemove", function (e) {
    if (drag) {
      var box = svg.getBoundingClientRect();
      var shift = ((e.clientX - drag.x) / box.width) * Number(svg.getAttribute("width")) / width * (drag.to - drag.from);
      var range = drag.to - drag.from;
      view.from = Math.max(0, Math.min(drag.from - shift, end - range));
      view.to = view.from + range;
      layout();
    }
  });
  svg.addEventListener("dblclick", fit);

  function describe(el) {
    var i = el.getAttribute("data-i");
    if (i === null) return null;
    var j = el.getAttribute("data-j");
    var out = [];
    if (el.hasAttribute("data-n")) {
      out.push(el.getAttribute("data-n") + " records in " + el.getAttribute("data-b") + " batches, events " + i + " to " + j + ":");
    }
    out.push(lines[Number(i)]);
    if (j !== null && j !== i) {
      if (Number(j) > Number(i) + 1) out.push("  ...");
      out.push(lines[Number(j)]);
    }
    // The trace pads its columns for a terminal; a tooltip reads better without the padding.
    return out.join("\n").replace(/ {3,}/g, "  ");
  }

  svg.addEventListener("mouseover", function (e) {
    var text = describe(e.target);
    if (text === null) return;
    tip.textContent = text;
    tip.hidden = false;
  });
  svg.addEventListener("mousemove", function (e) {
    tip.style.left = Math.min(e.pageX + 14, document.documentElement.scrollWidth - 420) + "px";
    tip.style.top = e.pageY + 16 + "px";
  });
  svg.addEventListener("mouseout", function () {
    tip.hidden = true;
  });

  function button(id, action) {
    var b = document.getElementById(id);
    if (b) b.addEventListener("click", action);
  }
  button("zoom-in", function () {
    zoom(0.5);
  });
  button("zoom-out", function () {
    zoom(2);
  });
  button("zoom-fit", fit);
  button("zoom-divergence", function () {
    var ring = document.querySelector(".ring.divergence");
    if (!ring) return;
    var t = Number(ring.getAttribute("data-t"));
    var half = Math.max(end / 40, 1000);
    view = { from: Math.max(0, t - half), to: Math.min(end, t + half) };
    layout();
  });
  layout();
  root.setAttribute("data-timeline", "ready");
})();
