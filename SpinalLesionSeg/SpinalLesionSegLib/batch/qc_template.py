"""The QC page's fixed parts: HTML skeleton, CSS and JavaScript (``qc_page`` fills in the rows).

Everything is inline and nothing is fetched, so the page works from ``file://`` with no server and no network,
as annotators open it straight from the dataset folder. The review (pass / fail / artifact per image) lives in
the browser's localStorage under a key naming the dataset, so it survives reloads and rebuilds of the page, and
is exported as SCT-style ``qc_fail.yml`` / ``qc_artifact.yml`` lists that ``batch --include @qc_fail.yml`` reads.

Placeholders, replaced verbatim (their values are HTML-escaped by the caller): ``@@TITLE@@``, ``@@KEY@@``,
``@@STATUS_OPTIONS@@``, ``@@CANDIDATE@@``, ``@@ROWS@@``, ``@@TIMELINE@@`` (the follow-up timeline, or
nothing), ``@@FOOTER@@``.
"""

from __future__ import annotations

CSS = """
:root { --head: 120px; color-scheme: dark; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #1b1d21; color: #dde1e6; }
header { position: sticky; top: 0; z-index: 2; background: #25282e; padding: 8px 14px; border-bottom: 1px solid #444; }
h1 { font-size: 17px; margin: 0 0 6px; }
header .bar { display: flex; flex-wrap: wrap; gap: 8px 18px; align-items: center; }
.help, .legend { color: #a4abb5; font-size: 12.5px; margin: 6px 0 0; }
kbd { border: 1px solid #666; border-radius: 3px; padding: 0 4px; background: #33373e; font-size: 12px; }
button, select { background: #33373e; color: inherit; border: 1px solid #5a606a; border-radius: 4px; padding: 3px 8px; }
button:hover { background: #3e434b; }
#storage { color: #ffb347; }
table { border-collapse: collapse; margin: 0 8px 40px; }
th { text-align: left; font-weight: 600; color: #a4abb5; padding: 6px; border-bottom: 1px solid #444; }
td { padding: 6px; border-bottom: 1px solid #33363c; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr { cursor: pointer; scroll-margin-top: var(--head); }
tbody tr.sel { background: #2b3442; outline: 2px solid #4da3ff; outline-offset: -2px; }
td.qc { width: 70px; font-weight: 700; color: #6b727c; }
td.name { white-space: nowrap; }
tr[data-qc="pass"] td.qc { color: #5fd35f; }
tr[data-qc="fail"] td.qc { color: #ff5c5c; }
tr[data-qc="artifact"] td.qc { color: #ffb347; }
.st-failed { color: #ff5c5c; }
.st-kept { color: #c9a0ff; }
td.pics { white-space: nowrap; }
td.pics img { margin-right: 6px; background: #000; vertical-align: top; }
pre.error { color: #ff8c8c; white-space: pre-wrap; max-width: 640px; margin: 0; }
.note { color: #a4abb5; font-style: italic; }
footer { padding: 0 16px 24px; }
"""

JS = r"""
(function () {
  "use strict";
  var KEY = "spinal-lesion-seg-qc:" + document.body.getAttribute("data-key");
  var KEYS = {p: "pass", f: "fail", a: "artifact", "0": ""};
  var rows = Array.prototype.slice.call(document.querySelectorAll("tbody tr"));
  var state = load();
  var current = -1;
  var background = false;

  function load() {
    try {
      var value = JSON.parse(localStorage.getItem(KEY) || "{}");
      return value && typeof value === "object" ? value : {};
    } catch (e) { unsaved(); return {}; }
  }
  function save() {
    try { localStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { unsaved(); }
  }
  function unsaved() {
    document.getElementById("storage").textContent =
      "This browser does not let the page save the review: export the lists before closing it.";
  }
  function byId(id) { return document.getElementById(id); }

  function shown(row) {
    var qc = state[row.dataset.image] || "", want = byId("f-qc").value, status = byId("f-status").value;
    return (want === "" || (want === "none" ? qc === "" : qc === want)) &&
      (status === "" || row.dataset.status === status) &&
      (!byId("f-lesions").checked || Number(row.dataset.lesions) > 0);
  }
  function refresh() {
    var counts = {pass: 0, fail: 0, artifact: 0, "": 0}, visible = 0;
    rows.forEach(function (row) {
      var qc = state[row.dataset.image] || "";
      row.dataset.qc = qc;
      row.querySelector("td.qc").textContent = qc || "\u2013";
      row.hidden = !shown(row);
      counts[qc] += 1;
      visible += row.hidden ? 0 : 1;
    });
    byId("counts").textContent = rows.length + " images: " + counts.pass + " pass, " + counts.fail + " fail, " +
      counts.artifact + " artifact, " + counts[""] + " to review; " + visible + " shown";
    if (current < 0 || rows[current].hidden) {
      var near = nearest(current, 1);
      select(near >= 0 ? near : nearest(current, -1));
    }
  }
  function select(index) {
    if (current >= 0) { rows[current].classList.remove("sel"); }
    current = index;
    if (index >= 0) {
      rows[index].classList.add("sel");
      rows[index].scrollIntoView({block: "nearest"});
    }
  }
  function nearest(from, step) {
    var index = from + step;
    while (index >= 0 && index < rows.length && rows[index].hidden) { index += step; }
    return index >= 0 && index < rows.length ? index : -1;
  }
  function move(step) {
    var index = nearest(current, step);
    if (index >= 0) { select(index); }
  }
  function mark(qc) {
    if (current < 0) { return; }
    if (qc) { state[rows[current].dataset.image] = qc; } else { delete state[rows[current].dataset.image]; }
    save();
    refresh();
  }
  function toggle() {
    background = !background;
    document.querySelectorAll("td.pics img").forEach(function (img) {
      img.src = background ? img.dataset.bg : img.dataset.ov;
    });
    byId("outline").textContent = background ? "off" : "on";
  }

  function marked(qc) {
    return rows.filter(function (row) { return state[row.dataset.image] === qc; })
      .map(function (row) { return row.dataset.image; });
  }
  function yml(qc) {
    return ["FILES_LESION:"].concat(marked(qc).map(function (image) { return "- " + image; })).join("\n") + "\n";
  }
  function tsv() {
    return "image\tqc\n" + rows.map(function (row) {
      return row.dataset.image + "\t" + (state[row.dataset.image] || "");
    }).join("\n") + "\n";
  }
  function download(name, text) {
    var link = document.createElement("a");
    link.href = "data:text/plain;charset=utf-8," + encodeURIComponent(text);
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  document.addEventListener("keydown", function (event) {
    var tag = event.target.tagName;
    if (event.ctrlKey || event.metaKey || event.altKey || tag === "INPUT" || tag === "SELECT") { return; }
    var key = event.key;
    if (key === "ArrowDown" || key === "j") { move(1); }
    else if (key === "ArrowUp" || key === "k") { move(-1); }
    else if (Object.prototype.hasOwnProperty.call(KEYS, key)) { mark(KEYS[key]); }
    else if (key === "t") { toggle(); }
    else { return; }
    event.preventDefault();
  });
  document.querySelector("tbody").addEventListener("click", function (event) {
    var row = event.target.closest("tr");
    if (row) { select(rows.indexOf(row)); }
    if (event.target.tagName === "IMG") { toggle(); }
  });
  ["f-qc", "f-status", "f-lesions"].forEach(function (id) {
    byId(id).addEventListener("change", function () { refresh(); byId(id).blur(); });
  });
  byId("x-fail").addEventListener("click", function () { download("qc_fail.yml", yml("fail")); });
  byId("x-artifact").addEventListener("click", function () { download("qc_artifact.yml", yml("artifact")); });
  byId("x-tsv").addEventListener("click", function () { download("qc_review.tsv", tsv()); });
  document.documentElement.style.setProperty("--head", document.querySelector("header").offsetHeight + 8 + "px");
  refresh();
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@@TITLE@@</title>
<style>""" + CSS + """</style>
</head>
<body data-key="@@KEY@@">
<header>
<h1>@@TITLE@@</h1>
<div class="bar">
<span id="counts"></span>
<label>QC <select id="f-qc"><option value="">all</option><option value="none">to review</option>
<option value="pass">pass</option><option value="fail">fail</option><option value="artifact">artifact</option>
</select></label>
<label>Status <select id="f-status"><option value="">all</option>@@STATUS_OPTIONS@@</select></label>
<label><input type="checkbox" id="f-lesions"> lesions &gt; 0 only</label>
<span>Export: <button id="x-fail">qc_fail.yml</button> <button id="x-artifact">qc_artifact.yml</button>
<button id="x-tsv">qc_review.tsv</button></span>
</div>
<p class="help"><kbd>&uarr;</kbd>/<kbd>&darr;</kbd> or <kbd>k</kbd>/<kbd>j</kbd> move &middot;
<kbd>p</kbd> pass &middot; <kbd>f</kbd> fail &middot; <kbd>a</kbd> artifact &middot; <kbd>0</kbd> clear &middot;
<kbd>t</kbd> or click a picture: lesion outline <b id="outline">on</b> &middot; <span id="storage"></span></p>
<p class="legend">Red outline: the lesion mask. Yellow tint: lesion probability of the soft map (from @@CANDIDATE@@,
stronger = surer). Sagittal: anterior on the left; axial: radiological (patient's right on the left).
Slices through the largest lesion, else the cord's middle, else the image centre.</p>
</header>
<table>
<thead><tr><th>QC</th><th>Subject</th><th>Session</th><th>Image</th><th>Status</th><th>Lesions</th>
<th>Volume (mm&sup3;)</th><th>Mean prob.</th><th>Sagittal &middot; axial</th></tr></thead>
<tbody>
@@ROWS@@
</tbody>
</table>
@@TIMELINE@@
<footer class="help">@@FOOTER@@</footer>
<script>""" + JS + """</script>
</body>
</html>
"""
