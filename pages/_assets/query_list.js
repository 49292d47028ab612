export default function ({ parentElement, data, setTriggerValue }) {
  const root = parentElement.querySelector(".darl-list") || parentElement;
  const store = "darl-list-" + data.list_id;
  const items = data.items, K = Math.min(data.grades.length, 9);
  const saved = JSON.parse(window.sessionStorage.getItem(store) || "null");
  // decisions: lease id -> grade index, or null for a skip; history: lease ids in the order decided (U pops).
  const st = saved || { decisions: {}, history: [], focus: 0, started: Date.now(), locked: null };
  if (!saved) {  // a new list: forget the lists before it
    Object.keys(window.sessionStorage).filter((k) => k.startsWith("darl-list-") && k !== store)
      .forEach((k) => window.sessionStorage.removeItem(k));
  }
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text; return e; };
  const save = () => window.sessionStorage.setItem(store, JSON.stringify(st));
  const decided = (i) => Object.prototype.hasOwnProperty.call(st.decisions, items[i].lease);
  const done = () => items.every((_, i) => decided(i));
  const locked = () => st.locked === data.rev;  // a submit of this very render is on its way
  root.replaceChildren();
  root.setAttribute("data-list-id", String(data.list_id));
  const head = el("div", "dl-head");
  const status = el("div", "dl-status"), titleBox = el("div");
  titleBox.append(el("div", "dl-cap", data.caption), el("div", "dl-query", data.query));
  head.append(titleBox, status);
  const list = el("ol"), rows = [];
  items.forEach((it, i) => {
    const li = el("li"), body = el("div", "dl-body");
    li.dataset.lease = String(it.lease);
    body.append(el("div", "dl-title", it.title));
    if (it.text) body.append(el("div", "dl-text", it.text));
    if (it.why.length) body.append(el("div", "dl-why", "Why picked: " + it.why.join(" ")));
    const badge = el("div", "dl-grade");
    li.append(el("div", "dl-n", String(i + 1)), body, badge);
    li.addEventListener("click", () => { if (!locked()) { st.focus = i; paint(); } });
    list.append(li); rows.push([li, badge]);
  });
  const bar = el("div", "dl-bar");
  const gradeButtons = data.grades.slice(0, K).map((g, k) => {
    const b = el("button", "dl-g", (k + 1) + " · " + g); b.type = "button";
    b.addEventListener("click", () => act(String(k + 1))); return b; });
  const skip = el("button", "dl-skip", "S · skip"), undo = el("button", "dl-undo", "U · undo");
  const submit = el("button", "dl-submit", "Submit list ⏎");
  [skip, undo, submit].forEach((b) => { b.type = "button"; });
  skip.addEventListener("click", () => act("s")); undo.addEventListener("click", () => act("u"));
  submit.addEventListener("click", () => act("Enter"));
  const note = el("div", "dl-note"), keys = el("div", "dl-keys", data.keys);
  bar.append(...gradeButtons, skip, undo, submit);
  root.append(head, list, bar, note, keys);

  function paint() {
    rows.forEach(([li, badge], i) => {
      const d = st.decisions[items[i].lease];
      li.classList.toggle("dl-focus", i === st.focus);
      li.setAttribute("aria-current", i === st.focus ? "true" : "false");
      badge.className = "dl-grade" + (d === null ? " dl-skip" : d !== undefined ? " dl-set" : "");
      // worst grade red, best green: a query's grades can be compared at a glance
      badge.style.background = d === null || d === undefined ? "" :
        "hsla(" + Math.round(120 * d / Math.max(data.grades.length - 1, 1)) + ", 70%, 45%, .2)";
      badge.textContent = d === null ? "skipped" : d !== undefined ? data.grades[d] : "—";
    });
    const n = items.filter((_, i) => decided(i)).length;
    status.textContent = locked() ? "Submitting…" : n + " of " + items.length + " decided"
      + (n === items.length ? " · Enter submits" : "");
    submit.disabled = !done() || locked();
    undo.disabled = !st.history.length || locked();
    rows[st.focus][0].scrollIntoView({ block: "nearest" });
    save();
  }
  function nextOpen(from) {  // the next undecided item after ``from``, wrapping; ``from`` if none is left
    for (let s = 1; s <= items.length; s++) { const i = (from + s) % items.length; if (!decided(i)) return i; }
    return from;
  }
  function decide(value) {
    const lease = items[st.focus].lease;
    st.decisions[lease] = value;
    st.history = st.history.filter((l) => l !== lease).concat([lease]);
    st.focus = nextOpen(st.focus);
  }
  function act(key) {
    if (locked()) { note.textContent = "Key ignored: this list is being submitted."; return true; }
    note.textContent = "";
    const k = key.length === 1 ? key.toLowerCase() : key;
    if (k === "ArrowDown" || k === "j") st.focus = Math.min(st.focus + 1, items.length - 1);
    else if (k === "ArrowUp" || k === "k") st.focus = Math.max(st.focus - 1, 0);
    else if (/^[1-9]$/.test(k) && Number(k) <= K) decide(Number(k) - 1);
    else if (k === "s") decide(null);
    else if (k === "u") {
      const lease = st.history.pop();
      if (lease === undefined) return true;
      delete st.decisions[lease];
      st.focus = items.findIndex((it) => it.lease === lease);
    } else if (k === "Enter") {
      if (!done()) { note.textContent = "Grade or skip every item first."; paint(); return true; }
      st.locked = data.rev;
      const decisions = items.map((it) => [it.lease, st.decisions[it.lease]]);
      save();
      setTriggerValue("submit", { list_id: data.list_id, decisions: decisions,
                                  seconds: (Date.now() - st.started) / 1000 });
    } else return false;
    paint();
    return true;
  }
  const onKey = (e) => {
    const t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
    if (!document.body.contains(root)) return;
    if (act(e.key)) { e.preventDefault(); e.stopPropagation(); }
  };
  if (window.__darlListKeys) window.removeEventListener("keydown", window.__darlListKeys, true);
  window.__darlListKeys = onKey;
  window.addEventListener("keydown", onKey, true);
  paint();
  // Grading happens here, without the server: every so often (half the lease) tell it the list is still
  // being worked on, so its leases do not expire under a slow, careful annotator. Not while submitting.
  const alive = window.setInterval(() => { if (!locked()) setTriggerValue("alive", data.list_id); },
                                   data.keepalive_s * 1000);
  return () => { window.clearInterval(alive); window.removeEventListener("keydown", onKey, true);
                 if (window.__darlListKeys === onKey) window.__darlListKeys = null; };
}
