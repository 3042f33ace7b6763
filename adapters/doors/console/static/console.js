// The console's only script: live validation in the editor, impact and verification progress, SLA countdowns.
// Every page works without it; it never builds HTML from data except through textContent.
"use strict";
(function () {
  const csrf = (document.querySelector('meta[name="csrf"]') || {}).content || "";

  // A streamed NDJSON answer (impact preview, log verification): progress into `bar`, then the fragment the
  // server rendered (and escaped) from its own template into `target`.
  async function follow(response, bar, target) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", last = null;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n")) >= 0) {
        const message = JSON.parse(buffer.slice(0, cut)); buffer = buffer.slice(cut + 1);
        if (message.total !== undefined) { bar.max = message.total || 1; bar.value = message.done; }
        if (message.html !== undefined) {
          const doc = new DOMParser().parseFromString(message.html, "text/html");
          target.replaceChildren(...doc.body.childNodes);
          bar.value = bar.max;
          last = message;
        }
      }
    }
    return last;
  }

  function gutter(source, gutterEl, badLines) {
    const lines = source.value.split("\n").length;
    gutterEl.textContent = "";
    for (let i = 1; i <= lines; i++) {
      const span = document.createElement("span");
      span.textContent = String(i) + "\n";
      if (badLines.has(i)) { span.className = "bad"; span.title = "error on this line"; }
      gutterEl.appendChild(span);
    }
    gutterEl.scrollTop = source.scrollTop;
  }

  function showProblems(result, list, status) {
    list.textContent = "";
    const bad = new Set();
    status.textContent = result.valid ? "Compiles: " + result.rules + " rules, " + result.tests + " tests"
                                      : result.errors.length + " error(s)";
    status.className = result.valid ? "ok" : "error";
    for (const [kind, items] of [["error", result.errors], ["warning", result.warnings]]) {
      for (const e of items) {
        const li = document.createElement("li");
        li.className = kind; li.dataset.line = e.line;
        const pos = document.createElement("span"); pos.className = "pos"; pos.textContent = e.line + ":" + e.column;
        const code = document.createElement("b"); code.textContent = " " + e.code + " ";
        li.append(pos, code, document.createTextNode(e.message));
        if (e.hint) { const small = document.createElement("small"); small.textContent = " hint: " + e.hint; li.append(document.createElement("br"), small); }
        list.appendChild(li);
        if (kind === "error") bad.add(e.line);
      }
    }
    return bad;
  }

  const source = document.getElementById("source");
  if (source) {
    const gutterEl = document.getElementById("gutter");
    const problems = document.getElementById("problems");
    let list = document.getElementById("problem-list");
    let status = problems.querySelector("p");
    let bad = new Set(Array.from(list.querySelectorAll("li.error")).map((li) => Number(li.dataset.line)));
    gutter(source, gutterEl, bad);
    let timer = null;
    source.addEventListener("scroll", () => { gutterEl.scrollTop = source.scrollTop; });
    source.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const response = await fetch("/api/validate", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
                                                      body: JSON.stringify({source: source.value})});
        if (!response.ok) return;
        bad = showProblems(await response.json(), list, status);
        gutter(source, gutterEl, bad);
      }, 350);
      gutter(source, gutterEl, bad);
    });
    problems.addEventListener("click", (event) => {
      const li = event.target.closest("li[data-line]");
      if (!li) return;
      const line = Number(li.dataset.line);
      const lines = source.value.split("\n");
      const start = lines.slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0);
      source.focus(); source.setSelectionRange(start, start + (lines[line - 1] || "").length);
      source.scrollTop = Math.max(0, (line - 5) * 18);
    });
    const impact = document.getElementById("impact");
    const bar = document.getElementById("impact-progress");
    impact.addEventListener("click", async (event) => {
      event.preventDefault();
      const form = document.getElementById("editor-form");
      bar.hidden = false; bar.value = 0;
      const response = await fetch("/rulesets/impact", {method: "POST", body: new FormData(form), headers: {"X-CSRF-Token": csrf}});
      if (!response.ok) { form.action = impact.formAction; form.submit(); return; }
      await follow(response, bar, document.getElementById("results"));
    });
  }

  function tick() {
    const now = Date.now() / 1000;
    for (const el of document.querySelectorAll(".countdown[data-deadline]")) {
      const left = Number(el.dataset.deadline) - now;
      const abs = Math.abs(left);
      const h = Math.floor(abs / 3600), m = Math.floor((abs % 3600) / 60), s = Math.floor(abs % 60);
      el.textContent = (left < 0 ? "overdue " : "") + (h ? h + "h " : "") + m + "m " + s + "s";
      el.classList.toggle("late", left < 0);
    }
  }
  tick(); setInterval(tick, 1000);

  // The table editor: each edit is checked as it is typed (the same check as the Check button, answered as
  // JSON) and its findings are marked on the rows and cells concerned; the page works without this too.
  const tableForm = document.getElementById("table-form");
  if (tableForm) {
    let timer = null, sent = 0;
    const findingItem = (e) => {
      const li = document.createElement("li"); li.className = e.kind;
      const code = document.createElement("b"); code.textContent = e.code + " ";
      li.append(code, document.createTextNode(e.message)); return li;
    };
    const apply = (result) => {
      const status = document.getElementById("table-status");
      status.textContent = result.valid ? "compiles" + (result.warnings ? " with " + result.warnings + " warning(s)" : "")
                                        : result.errors + " error(s)";
      status.className = result.valid ? "ok" : "error";
      let list = document.getElementById("table-problems");
      if (!list) {
        list = document.createElement("ul"); list.id = "table-problems"; list.className = "findings";
        document.getElementById("grid").before(list);
      }
      list.replaceChildren(...result.table.map(findingItem));
      for (const extra of document.querySelectorAll("#grid tr.row-problems")) extra.remove();
      for (const row of document.querySelectorAll("#grid tbody tr[id^=row-]")) {
        const found = result.rows[row.id.slice(4)] || [];
        row.className = found.some((e) => e.kind === "error") ? "bad" : (found.length ? "warn" : "");
        for (const td of row.querySelectorAll("td.bad-cell")) td.classList.remove("bad-cell");
        if (found.length) {
          const tr = document.createElement("tr"); tr.className = "row-problems";
          const pad = document.createElement("td"); const td = document.createElement("td");
          td.colSpan = row.cells.length - 1;
          const ul = document.createElement("ul"); ul.replaceChildren(...found.map(findingItem));
          td.append(ul); tr.append(pad, td); row.after(tr);
        }
      }
      for (const [row, col, code] of result.cells) {
        const input = tableForm.querySelector(`input[name="c${row - 1}_${col}"]`);
        if (input) { input.parentElement.classList.add("bad-cell"); input.title = code; }
      }
    };
    tableForm.addEventListener("input", (event) => {
      if (!event.target.name || !/^c\d+_\d+$/.test(event.target.name)) return;
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const mine = ++sent;
        const body = new FormData(tableForm); body.set("op", "check");
        const response = await fetch(tableForm.action, {method: "POST", body, headers: {"Accept": "application/json"}});
        if (mine === sent && response.headers.get("content-type", "").startsWith("application/json")) apply(await response.json());
      }, 350);
    });
  }

  // Exports: streamed into the page with a count of the decisions so far, then saved as a file (without the
  // script the links download directly). The last line says the export is whole.
  for (const link of document.querySelectorAll("a.export")) {
    link.addEventListener("click", async (event) => {
      event.preventDefault();
      const status = document.getElementById("export-progress");
      status.hidden = false; status.textContent = "exporting…";
      const response = await fetch(link.href);
      if (!response.ok || !response.body) { window.location = link.href; return; }
      const reader = response.body.getReader();
      const parts = [], decoder = new TextDecoder(), heading = link.id === "export-csv" ? 2 : 1;
      let lines = 0, last = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        parts.push(value);
        const text = decoder.decode(value, {stream: true});
        lines += (text.match(/\n/g) || []).length;
        last = (last + text).slice(-200);
        status.textContent = Math.max(0, lines - heading).toLocaleString() + " decisions exported so far…";
      }
      const end = last.trim().split("\n").pop();
      const match = end.match(/"decisions": (\d+)|# end: (\d+) decisions/);
      status.textContent = match ? "done: " + (match[1] || match[2]) + " decisions, saved as a file"
                                 : "the export stopped before its end line: it is incomplete";
      status.className = match ? "ok" : "error";
      const url = URL.createObjectURL(new Blob(parts, {type: response.headers.get("content-type") || ""}));
      const save = document.createElement("a");
      save.href = url; save.download = (response.headers.get("content-disposition") || "").split('filename="')[1]?.replace('"', "") || "decisions";
      document.body.append(save); save.click(); save.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    });
  }

  // Operations: verify the whole log with a progress bar (without the script the form posts and redirects)
  const verify = document.getElementById("verify-form");
  if (verify) {
    verify.addEventListener("submit", async (event) => {
      event.preventDefault();
      const bar = document.getElementById("verify-progress");
      bar.hidden = false; bar.value = 0;
      const response = await fetch("/ops/verify", {method: "POST", body: new FormData(verify), headers: {"Accept": "application/x-ndjson"}});
      if (!response.ok) { verify.submit(); return; }
      const result = await follow(response, bar, document.getElementById("chain-result"));
      if (result && result.intact !== undefined) {  // the tile and the page's banner say what the result says
        const tile = document.getElementById("chain-tile");
        document.getElementById("chain-tile-state").textContent = result.intact ? "intact" : "BROKEN";
        tile.classList.toggle("alarm", !result.intact);
        const slot = document.getElementById("chain-banner-slot");
        if (slot && result.banner !== undefined) {
          const doc = new DOMParser().parseFromString(result.banner, "text/html");
          slot.replaceChildren(...doc.body.childNodes);
        }
      }
    });
  }
})();
