// Minimal client: login, workspaces, one console. The full IDE is a separate piece of work.
"use strict";
const $ = (id) => document.getElementById(id);
const csrf = () => (document.cookie.match(/(?:^|; )rsparkhub_csrf=([^;]*)/) || [])[1] || "";

async function api(method, path, body) {
  const r = await fetch(path, {
    method, credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (!r.ok) throw new Error(data?.error?.message || r.statusText);
  return data;
}

function show(id) { for (const s of ["login", "home", "console"]) $(s).hidden = s !== id; }

async function home() {
  let me;
  try { me = await api("GET", "/api/me"); } catch { show("login"); return; }
  $("me").textContent = me.name;
  const list = $("workspaces");
  list.replaceChildren();
  for (const w of await api("GET", "/api/workspaces")) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "#ws=" + w.id; a.textContent = `${w.project} / ${w.name}`;
    li.append(a); list.append(li);
  }
  show("home");
}

let sock = null, session = null, lastSeq = 0, wsId = null, pending = 0;
function print(text, cls) {
  const span = document.createElement("span");
  if (cls) span.className = cls;
  span.textContent = text;
  $("out").append(span);
  $("out").scrollTop = $("out").scrollHeight;
}

function connect(id) {
  wsId = id;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const q = session ? `?session=${session}&since=${lastSeq}` : "";
  sock = new WebSocket(`${proto}://${location.host}/api/workspaces/${id}/ws${q}`);
  sock.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "welcome") { session = msg.session_id; lastSeq = msg.since; $("state").textContent = msg.state; return; }
    if (msg.type === "protocol_error") { print(msg.message + "\n", "error"); return; }
    if (msg.type !== "event") return;
    if (msg.session_id === session) lastSeq = msg.seq;
    const e = msg.event;
    if (e.type === "stream") print(e.text, e.name === "stderr" ? "stderr" : "");
    else if (e.type === "result") print((e.data["text/plain"] || "") + "\n");
    else if (e.type === "error") print((e.traceback.join("\n") || `${e.ename}: ${e.evalue}`) + "\n", "error");
    else if (e.type === "plot") { const img = new Image(); img.className = "plot"; img.alt = "plot"; img.src = e.url; $("out").append(img); }
    else if (e.type === "status") $("state").textContent = `${e.language}: ${e.state}`;
    else if (e.type === "session") { $("state").textContent = e.state; if (e.message) print(`[session ${e.state}: ${e.message}]\n`, "meta"); }
    else if (e.type === "done" && e.status === "failed") print(e.message + "\n", "error");
  };
  sock.onclose = () => { if (wsId === id) setTimeout(() => connect(id), 1000); };
}

function run() {
  const code = $("code").value;
  if (!code.trim() || !sock) return;
  print("> " + code + "\n", "meta");
  sock.send(JSON.stringify({ type: "execute", id: `r${Date.now()}-${pending++}`, code, language: $("lang").value, mode: "console" }));
  $("code").value = "";
}

async function route() {
  const m = location.hash.match(/^#ws=(\w+)/);
  if (sock) { wsId = null; sock.close(); sock = null; session = null; lastSeq = 0; }
  if (!m) return home();
  const w = await api("GET", `/api/workspaces/${m[1]}`);
  $("ws-title").textContent = w.name;
  $("out").replaceChildren();
  show("console");
  connect(w.id);
}

$("login-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try { await api("POST", "/api/login", { name: f.get("name"), password: f.get("password") }); route(); }
  catch (e) { $("login-error").textContent = e.message; }
};
$("logout").onclick = async () => { await api("POST", "/api/logout"); show("login"); };
$("new-ws").onsubmit = async (ev) => {
  ev.preventDefault();
  const name = new FormData(ev.target).get("name");
  let projects = await api("GET", "/api/projects");
  let p = projects.find((x) => x.name === "default") || await api("POST", "/api/projects", { name: "default" });
  await api("POST", `/api/projects/${p.id}/workspaces`, { name });
  ev.target.reset(); home();
};
$("run").onclick = run;
$("code").onkeydown = (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(); } };
$("interrupt").onclick = () => sock?.send(JSON.stringify({ type: "interrupt", id: `i${Date.now()}` }));
window.onhashchange = route;
route();
