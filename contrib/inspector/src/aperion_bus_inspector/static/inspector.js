// aperion-bus inspector: live follow of the timeline over server-sent events.
// Every value is put in with textContent, never as HTML.
"use strict";
(function () {
  const box = document.getElementById("follow");
  if (!box) return;
  const rows = document.getElementById("rows");
  const status = document.getElementById("follow-status");
  let source = null;
  let after = box.dataset.after;

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function add(rec) {
    const tr = document.createElement("tr");
    tr.dataset.id = rec.id;
    tr.className = rec.failed ? "failed new" : "new";
    const t = document.createElement("td");
    const a = document.createElement("a");
    a.href = "/record/" + encodeURIComponent(rec.id);
    a.textContent = rec.time;
    t.appendChild(a);
    tr.appendChild(t);
    const et = cell(rec.event_type);
    et.className = "etype";
    tr.appendChild(et);
    tr.appendChild(cell(rec.source));
    const c = document.createElement("td");
    if (rec.cid) {
      const link = document.createElement("a");
      link.href = "/request?cid=" + encodeURIComponent(rec.cid);
      link.textContent = rec.correlation_id;
      c.appendChild(link);
    }
    tr.appendChild(c);
    const p = document.createElement("td");
    p.className = "payload";
    const code = document.createElement("code");
    code.textContent = rec.payload;
    p.appendChild(code);
    tr.appendChild(p);
    const empty = rows.querySelector("tr.empty");
    if (empty) empty.remove();
    rows.insertBefore(tr, rows.firstChild);
    while (rows.children.length > 500) rows.lastChild.remove();
  }

  function start() {
    const q = box.dataset.query;
    source = new EventSource("/api/stream?after=" + encodeURIComponent(after) + (q ? "&" + q : ""));
    source.addEventListener("record", function (ev) {
      const rec = JSON.parse(ev.data);
      after = String(rec.id);
      add(rec);
      status.textContent = "following: last record " + rec.time;
    });
    source.onopen = function () { status.textContent = "following"; };
    source.onerror = function () { status.textContent = "reconnecting…"; };
  }

  box.addEventListener("change", function () {
    if (box.checked) {
      start();
    } else if (source) {
      source.close();
      source = null;
      status.textContent = "";
    }
  });
})();
