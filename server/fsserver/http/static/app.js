// The facesearch web page: identify a photo, enroll people, list/rename/forget them, and
// read the server's calibration. Plain JS against the /v1 JSON routes; no build step.
"use strict";

const TOKEN_KEY = "facesearch.token";
const COLLECTION_KEY = "facesearch.collection";
const CANDIDATES = 3;
const PAGE_SIZE = 50;

const $ = (id) => document.getElementById(id);
const state = {
  collection: localStorage.getItem(COLLECTION_KEY) || "default",
  collections: [],
  peopleNext: "",
  photoUrl: "",
  identifying: 0, // the latest photo's number: an older answer arriving late is dropped
  statsTimer: 0,
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// --- talking to the server --------------------------------------------------------------

async function api(path, { method = "GET", json, form, blob = false } = {}) {
  const headers = {};
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  let body = form;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (error) {
    throw new ApiError(0, "UNAVAILABLE", `the server cannot be reached (${error.message})`);
  }
  if (!response.ok) {
    let code = `HTTP ${response.status}`;
    let message = response.statusText || "the request failed";
    try {
      const answer = await response.json();
      code = answer.code || code;
      message = answer.message || message;
    } catch {
      // not JSON: keep the status line
    }
    if (response.status === 401) $("token-form").hidden = false;
    throw new ApiError(response.status, code, message);
  }
  return blob ? response.blob() : response.json();
}

const enc = encodeURIComponent;
const inCollection = (rest) => `/v1/collections/${enc(state.collection)}${rest}`;

function showError(error) {
  const box = $("error");
  box.textContent = error instanceof ApiError ? `${error.message} (${error.code})` : `${error}`;
  box.hidden = false;
}

// A user's action: its error, if any, is shown in the page.
async function run(action) {
  $("error").hidden = true;
  try {
    await action();
  } catch (error) {
    showError(error);
  }
}

const say = (id, text) => void ($(id).textContent = text);
const pct = (x) => (x == null ? "–" : `${(x * 100).toFixed(x < 0.1 ? 2 : 1)}%`);
const num = (x, digits = 3) => (x == null ? "–" : Number(x).toFixed(digits));
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

// Thumbnails come through fetch (so they carry the token) as object URLs, cached by path.
const thumbs = new Map();

function thumbnail(path) {
  if (!thumbs.has(path)) {
    const url = api(path, { blob: true }).then((blob) => URL.createObjectURL(blob));
    thumbs.set(path, url.catch(() => null));
  }
  return thumbs.get(path);
}

function forgetThumbs(prefix) {
  for (const [path, url] of thumbs) {
    if (!path.startsWith(prefix)) continue;
    url.then((u) => u && URL.revokeObjectURL(u));
    thumbs.delete(path);
  }
}

function thumbImage(path, alt) {
  const img = el("img", { className: "thumb", alt, width: 56, height: 56 });
  thumbnail(path).then((url) => {
    if (url) img.src = url;
    else img.alt = ""; // no thumbnail: the grey square says so
  });
  return img;
}

// --- collections --------------------------------------------------------------------------

async function loadCollections() {
  const { collections } = await api("/v1/collections");
  state.collections = collections;
  const select = $("collection");
  select.replaceChildren(...collections.map((c) => new Option(optionText(c), c.name)));
  $("token-form").hidden = true;
  if (!collections.some((c) => c.name === state.collection)) {
    state.collection = collections.some((c) => c.name === "default")
      ? "default"
      : collections[0]?.name || "default";
  }
  select.value = state.collection;
  await openCollection();
}

const optionText = (c) =>
  `${c.name} (${c.model || `${c.dim}-d vectors`}, ${plural(c.count, "item")})`;

async function openCollection() {
  localStorage.setItem(COLLECTION_KEY, state.collection);
  const info = state.collections.find((c) => c.name === state.collection);
  const photos = !info || Boolean(info.model);
  $("vector-only").hidden = photos;
  for (const input of document.querySelectorAll("#identify-file, #enroll-form *")) {
    if ("disabled" in input) input.disabled = !photos;
  }
  $("identify-view").hidden = true;
  for (const id of ["identify-status", "rule", "enroll-status", "people-status"]) say(id, "");
  await Promise.all([loadPeople(), loadStats()]);
}

// --- identify -----------------------------------------------------------------------------

async function identify(file) {
  const ticket = ++state.identifying;
  const img = $("identify-image");
  const list = $("identify-results");
  list.replaceChildren();
  $("boxes").replaceChildren();
  delete list.dataset.file;
  say("rule", "");
  say("identify-status", `Looking for faces in ${file.name}…`);
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photoUrl = URL.createObjectURL(file);
  const loaded = new Promise((resolve) => {
    img.onload = img.onerror = resolve;
  });
  img.src = state.photoUrl;
  $("identify-view").hidden = false;
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("candidates", String(CANDIDATES));
  let answer;
  try {
    answer = await api(inCollection("/identify"), { method: "POST", form });
  } catch (error) {
    if (ticket !== state.identifying) return;
    say("identify-status", "");
    $("identify-view").hidden = true;
    throw error;
  }
  await loaded;
  if (ticket !== state.identifying) return;
  const faces = answer.results || [];
  faces.forEach((result, index) => {
    drawBox(img, result, index);
    list.append(faceEntry(result, index));
  });
  list.dataset.file = file.name;
  const known = faces.filter((r) => r.known).length;
  say(
    "identify-status",
    faces.length
      ? `${file.name}: ${plural(faces.length, "face")}, ${known} known.`
      : `${file.name}: no face found.`,
  );
  say("rule", answer.decision ? `Decided by ${describeRule(answer.decision)}.` : "");
}

function nameOf(result) {
  return result.known ? result.person : "unknown";
}

function drawBox(img, result, index) {
  const { naturalWidth: w, naturalHeight: h } = img;
  const box = result.face && result.face.box;
  if (!box || !w || !h) return; // the browser cannot show this format: the list still says
  const frame = el(
    "div",
    {
      className: `box ${result.known ? "known" : "unknown"}${box.y / h < 0.06 ? " low" : ""}`,
      dataset: { testid: "box" },
    },
    el("span", { className: "tag" }, `${index + 1}. ${nameOf(result)}`),
  );
  Object.assign(frame.style, {
    left: `${(box.x / w) * 100}%`,
    top: `${(box.y / h) * 100}%`,
    width: `${(box.width / w) * 100}%`,
    height: `${(box.height / h) * 100}%`,
  });
  $("boxes").append(frame);
}

function faceEntry(result, index) {
  const name = nameOf(result);
  const detail = [`distance ${num(result.distance)}`];
  if (result.margin != null) detail.push(`margin to the next person ${num(result.margin)}`);
  const candidates = el("ul", { className: "candidates", "aria-label": "Nearest people" });
  for (const c of result.candidates || []) {
    const path = c.id != null ? `/items/${c.id}/thumbnail` : `/people/${enc(c.person)}/thumbnail`;
    candidates.append(
      el(
        "li",
        { dataset: { testid: "candidate", person: c.person } },
        thumbImage(inCollection(path), `Face of ${c.person}`),
        el("span", {}, c.person, el("br"), pct(c.similarity)),
      ),
    );
  }
  return el(
    "li",
    {
      className: result.known ? "known" : "unknown",
      dataset: {
        testid: "face",
        known: String(Boolean(result.known)),
        similarity: String(result.similarity ?? ""),
      },
    },
    el("span", { className: "num" }, `${index + 1}`),
    el("strong", { className: "name", dataset: { testid: "face-name" } }, name),
    " ",
    el("span", { dataset: { testid: "face-similarity" } }, `similarity ${pct(result.similarity)}`),
    el("div", { className: "detail" }, detail.join(", ")),
    candidates,
  );
}

function describeRule(rule) {
  const parts = [`the ${rule.source} rule`];
  if (rule.source !== "none") parts.push(`threshold ${num(rule.threshold)}`);
  if (rule.margin) parts.push(`margin ${num(rule.margin)}`);
  return parts.join(", ");
}

// --- enroll -------------------------------------------------------------------------------

async function enroll() {
  const name = $("enroll-name").value.trim();
  const files = [...$("enroll-files").files];
  if (!name || !files.length) return;
  const form = new FormData();
  for (const file of files) form.append("image", file, file.name);
  form.append("label", name);
  const status = $("enroll-status");
  status.replaceChildren(`Enrolling ${plural(files.length, "photo")} as ${name}…`);
  let answer;
  try {
    answer = await api(inCollection("/add"), { method: "POST", form });
  } catch (error) {
    status.replaceChildren();
    throw error;
  }
  const items = answer.items || [];
  const stored = items.filter((i) => i.ok).length;
  const problems = el("ul", { className: "problems" });
  items.forEach((item, i) => {
    const file = files[i] ? files[i].name : `photo ${i + 1}`;
    if (!item.ok) problems.append(el("li", {}, `${file}: ${item.error}`));
    else if (item.faces_found > 1) {
      problems.append(el("li", {}, `${file}: ${item.faces_found} faces, the largest enrolled`));
    }
  });
  status.replaceChildren(
    el(
      "p",
      { dataset: { testid: "enroll-summary" } },
      `${stored} of ${files.length} enrolled as ${name}.`,
    ),
    problems,
  );
  if (stored) {
    $("enroll-form").reset();
    forgetThumbs(inCollection(`/people/${enc(name)}/`));
    await Promise.all([loadPeople(), loadStats()]);
    refreshStatsSoon();
  }
}

// --- people -------------------------------------------------------------------------------

async function loadPeople(more = false) {
  const query = new URLSearchParams({ page_size: String(PAGE_SIZE) });
  if (more && state.peopleNext) query.set("page_token", state.peopleNext);
  const page = await api(inCollection(`/people?${query}`));
  const list = $("people");
  if (!more) list.replaceChildren();
  for (const person of page.people) list.append(personRow(person));
  if (!more && !page.total) list.append(el("li", { className: "note" }, "Nobody is enrolled yet."));
  state.peopleNext = page.next_page_token || "";
  $("people-more").hidden = !state.peopleNext;
  say("people-total", `(${page.total})`);
  list.dataset.total = String(page.total);
}

function personRow(person) {
  const row = $("person-row").content.firstElementChild.cloneNode(true);
  const { label, count } = person;
  row.dataset.label = label;
  row.querySelector(".name").textContent = label;
  row.querySelector(".count").textContent = plural(count, "photo");
  row.replaceChild(
    thumbImage(inCollection(`/people/${enc(label)}/thumbnail`), `Face of ${label}`),
    row.querySelector(".thumb"),
  );
  const form = row.querySelector(".rename-form");
  const input = row.querySelector(".new-name");
  const renameButton = row.querySelector(".rename");
  renameButton.setAttribute("aria-label", `Rename ${label}`);
  renameButton.addEventListener("click", () => {
    form.hidden = !form.hidden;
    input.value = label;
    if (!form.hidden) input.select();
  });
  row.querySelector(".cancel").addEventListener("click", () => void (form.hidden = true));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(() => rename(label, input.value.trim()));
  });
  const forgetButton = row.querySelector(".forget");
  forgetButton.setAttribute("aria-label", `Forget ${label}`);
  forgetButton.addEventListener("click", () => run(() => forget(label, count)));
  return row;
}

async function rename(label, newLabel) {
  if (!newLabel || newLabel === label) return;
  const answer = await api(inCollection(`/people/${enc(label)}/rename`), {
    method: "POST",
    json: { new_label: newLabel },
  });
  const merged = answer.merged ? `, joining the ${newLabel} already enrolled` : "";
  const photos = plural(answer.renamed, "photo");
  say("people-status", `Renamed ${label} to ${newLabel}: ${photos}${merged}.`);
  await peopleChanged();
}

async function forget(label, count) {
  if (!window.confirm(`Forget ${label}? This deletes their ${plural(count, "photo")}.`)) return;
  const answer = await api(inCollection(`/people/${enc(label)}`), { method: "DELETE" });
  say("people-status", `Forgot ${label}: ${plural(answer.deleted, "photo")} deleted.`);
  await peopleChanged();
}

async function peopleChanged() {
  forgetThumbs(inCollection("/people/"));
  await Promise.all([loadPeople(), loadStats()]);
  refreshStatsSoon();
}

// --- stats --------------------------------------------------------------------------------

async function loadStats() {
  const stats = await api(inCollection("/stats"));
  const rule = stats.decision || {};
  const target = `target ${pct(stats.target_recall)}`;
  const measured = stats.recall_measured_at;
  const recall = measured
    ? `${pct(stats.estimated_recall)} (${target}; measured at ${plural(measured, "item")})`
    : `not measured yet (${target})`;
  const calibrated = rule.source === "calibrated";
  const rows = [
    ["count", "Items", `${stats.count} (${plural(stats.people ?? 0, "person", "people")})`],
    ["ef", "Search ef (calibrated)", `${stats.ef}`],
    ["recall", "Estimated recall", recall],
    ["rule", "Open-set rule", rule.source ? describeRule(rule) : "–"],
    [
      "far",
      "Estimated false accepts",
      `${calibrated ? pct(rule.estimated_far) : "not estimated"} (target ${pct(rule.target_far)})`,
    ],
    ["tar", "Estimated true accepts", calibrated ? pct(rule.estimated_tar) : "not estimated"],
  ];
  if (calibrated) {
    const basis = `${plural(rule.people, "person", "people")}, ${plural(rule.items, "item")}`;
    rows.push(["calibrated-on", "Calibrated on", basis]);
  }
  const list = $("stats");
  list.replaceChildren(
    ...rows.flatMap(([key, term, value]) => [
      el("dt", {}, term),
      el("dd", { dataset: { testid: `stat-${key}` } }, value),
    ]),
  );
  list.dataset.source = rule.source || "";
  const info = state.collections.find((c) => c.name === state.collection);
  const option = [...$("collection").options].find((o) => o.value === state.collection);
  if (info && option) option.text = optionText({ ...info, count: stats.count });
  list.dataset.count = String(stats.count);
  say("stats-reason", rule.reason || "");
}

// The rule is recalibrated in the background a moment after writes stop.
function refreshStatsSoon() {
  clearTimeout(state.statsTimer);
  state.statsTimer = setTimeout(() => loadStats().catch(showError), 3000);
}

// --- wiring -------------------------------------------------------------------------------

function wire() {
  $("collection").addEventListener("change", (event) => {
    state.collection = event.target.value;
    run(openCollection);
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
    thumbs.clear();
    run(loadCollections);
  });
  $("identify-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) run(() => identify(file));
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file && !$("identify-file").disabled) {
      $("identify-file").value = ""; // it would still name the last photo chosen
      run(() => identify(file));
    }
  });
  // A photo dropped beside the drop zone is not opened in place of the page.
  for (const kind of ["dragover", "drop"]) {
    document.addEventListener(kind, (event) => event.preventDefault());
  }
  $("enroll-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(enroll);
  });
  $("people-more").addEventListener("click", () => run(() => loadPeople(true)));
  $("stats-refresh").addEventListener("click", () => run(loadStats));
}

wire();
run(loadCollections);
