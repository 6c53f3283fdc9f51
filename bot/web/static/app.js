// fashionbot web chat: a thin adapter over the JSON API in bot/web/routes.py.
// Every text that comes from the catalogue or a shop is put on the page with
// textContent (or as an attribute value), never parsed as HTML.
"use strict";

(() => {
  const HISTORY_KEY = "fashionbot.chat.v1";
  const MAX_MESSAGES = 40;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const ICONS = {
    up: "M7 11v9H4.5a1 1 0 0 1-1-1v-7a1 1 0 0 1 1-1H7Zm0 0 3.6-6.3a1.6 1.6 0 0 1 2.9 1.1L13 10h5.3a2 2 0 0 1 2 2.4l-1.3 6A2 2 0 0 1 17 20H7",
    out: "M14 4h6v6M20 4l-9 9M18 14v4a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2h4",
    page: "M9 5l7 7-7 7",
    draw: "M4 9V5a1 1 0 0 1 1-1h4M15 4h4a1 1 0 0 1 1 1v4M20 15v4a1 1 0 0 1-1 1h-4M9 20H5a1 1 0 0 1-1-1v-4",
  };
  const WHOLE = "whole";           // the key of the whole-photo search
  const SELECTION = "selection";   // the key of the box the visitor drew
  const MIN_BOX = 0.03;            // a drawn box smaller than this (share of the photo's side) is a slip

  const $ = (sel) => document.querySelector(sel);
  const log = $("#log");
  const statusRegion = $("#status");
  const fileInput = $("#file");
  const composer = $("#composer");
  const textInput = $("#composer-text");
  const overlay = $("#drop-overlay");
  const forgetDialog = $("#forget-dialog");
  const trendDialog = $("#trend-dialog");

  let config = {
    no_garment: "I can't see any clothing in this photo.",
    no_garment_hint: "If there is something to match in it anyway, search the whole photo.",
    whole_photo: "Whole photo",
    search_whole_photo: "Search the whole photo",
    max_image_bytes: 20 * 1024 * 1024,
    top_k: 10,
    trend_available: false,
    help: "Send me a photo of an outfit and I'll find similar items.",
    hint: "Send me a photo of an outfit and I'll find similar items. /help lists what else I can do.",
  };
  let state = { next: 1, messages: [], ratings: {} };
  const blobUrls = new Map(); // message id -> object URL of the user's photo thumbnail
  // The photos themselves stay in this tab only (never in sessionStorage, never uploaded
  // anywhere but /api/recommend): a drawn box is searched by sending the same file again.
  const files = new Map();    // photo message id -> the File the visitor chose
  const fileUrls = new Map(); // photo message id -> object URL of that File
  const busyResults = new Set(); // results message ids waiting for a switch or a box search
  const drawing = new Set();     // results message ids in "draw a box" mode

  // ---- DOM helpers ---------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function icon(name, extraClass) {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("class", "icon" + (extraClass ? " " + extraClass : ""));
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", ICONS[name]);
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "1.8");
    path.setAttribute("stroke-linecap", "round");
    path.setAttribute("stroke-linejoin", "round");
    svg.append(path);
    return svg;
  }

  // Links come from the server already checked; check again before they become hrefs.
  function safeHref(url, fallback) {
    if (typeof url === "string" && (/^https?:\/\//i.test(url) || /^\/items\/\d+$/.test(url))) return url;
    return fallback;
  }

  function announce(text) {
    statusRegion.textContent = "";
    window.setTimeout(() => { statusRegion.textContent = text; }, 30);
  }

  let toastTimer = 0;
  function toast(text, tone) {
    let node = $("#toast");
    if (!node) {
      node = el("div", { id: "toast", class: "toast", "aria-hidden": "true" });
      document.body.append(node);
    }
    node.textContent = text;
    node.className = "toast show" + (tone ? " " + tone : "");
    window.clearTimeout(toastTimer);
    toastTimer = window.setTimeout(() => { node.className = "toast"; }, 2600);
    announce(text);
  }

  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  function reveal(node, where) {
    node.scrollIntoView({ block: where || "end", behavior: reducedMotion ? "auto" : "smooth" });
  }

  // ---- API ---------------------------------------------------------------------------
  async function api(path, options) {
    const opts = Object.assign({ credentials: "same-origin" }, options || {});
    if (opts.json !== undefined) {
      opts.headers = Object.assign({ "Content-Type": "application/json" }, opts.headers || {});
      opts.body = JSON.stringify(opts.json);
      delete opts.json;
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (err) {
      return { ok: false, status: 0, error: "I can't reach fashionbot right now. Is it still running?" };
    }
    if (opts.raw) return { ok: resp.ok, status: resp.status, resp };
    let data = null;
    try { data = await resp.json(); } catch (err) { data = null; }
    if (!resp.ok) {
      const error = data && typeof data.error === "string" ? data.error
        : `Something went wrong (error ${resp.status}). Please try again.`;
      return { ok: false, status: resp.status, error };
    }
    return { ok: true, status: resp.status, data };
  }

  // ---- history (sessionStorage: this tab only, gone when it closes) --------------------
  function save() {
    let messages = state.messages.slice(-MAX_MESSAGES);
    state.messages = messages;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        sessionStorage.setItem(HISTORY_KEY, JSON.stringify(state));
        return;
      } catch (err) {
        // Over quota: drop thumbnails first, then older messages.
        if (attempt === 0) state.messages.forEach((m) => { if (m.thumb) m.thumb = null; });
        else state.messages = state.messages.slice(-10);
      }
    }
  }

  function restore() {
    try {
      const raw = sessionStorage.getItem(HISTORY_KEY);
      if (!raw) return;
      const saved = JSON.parse(raw);
      if (!saved || !Array.isArray(saved.messages)) return;
      state = { next: Number(saved.next) || 1, messages: saved.messages, ratings: saved.ratings || {} };
    } catch (err) {
      return;
    }
    for (const msg of state.messages) {
      if (msg.kind === "trend" && msg.progress && !msg.progress.done) {
        msg.progress.done = true;
        msg.progress.error = "This search was interrupted when the page was reloaded.";
      }
      log.append(render(msg));
    }
    markHistory();
    const last = log.lastElementChild;
    if (last) last.scrollIntoView({ block: "end" });
  }

  function markHistory() {
    document.body.classList.toggle("has-history", state.messages.length > 0);
  }

  function add(msg) {
    msg.id = state.next++;
    state.messages.push(msg);
    save();
    markHistory();
    const node = render(msg);
    log.append(node);
    reveal(node, msg.kind === "results" || msg.kind === "style" ? "start" : "end");
    return msg;
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 160;
  }

  function update(msg) {
    save();
    const follow = nearBottom(); // only follow along if the reader hasn't scrolled away
    const old = document.getElementById("m-" + msg.id);
    const node = render(msg);
    if (old) old.replaceWith(node); else log.append(node);
    const fresh = node.querySelector(".sub-head");
    if (follow && fresh) reveal(fresh, "start");
    else if (follow) reveal(node, "end");
  }

  function remove(msg) {
    state.messages = state.messages.filter((m) => m !== msg);
    save();
    const node = document.getElementById("m-" + msg.id);
    if (node) node.remove();
    markHistory();
  }

  function pending(text) {
    const node = el("div", { class: "msg bot pending", "aria-busy": "true" },
      el("div", { class: "bubble" }, el("span", { class: "dots", "aria-hidden": "true" }, el("i"), el("i"), el("i")),
        el("span", { text })));
    log.append(node);
    reveal(node);
    announce(text);
    return node;
  }

  // ---- rendering ---------------------------------------------------------------------
  function render(msg) {
    const wrap = el("div", { class: `msg ${msg.who}`, id: "m-" + msg.id });
    switch (msg.kind) {
      case "photo": wrap.append(renderPhoto(msg)); break;
      case "results": wrap.classList.add("wide"); wrap.append(renderResults(msg)); break;
      case "style": wrap.classList.add("wide"); wrap.append(renderStyle(msg)); break;
      case "trend": wrap.classList.add("wide"); wrap.append(renderTrend(msg)); break;
      default: wrap.append(el("div", { class: "bubble" + (msg.tone ? " " + msg.tone : "") },
        el("p", { class: "text", text: msg.text || "" })));
    }
    return wrap;
  }

  function renderPhoto(msg) {
    const bubble = el("div", { class: "bubble photo" });
    const url = thumbUrl(msg);
    if (url) bubble.append(el("img", { src: url, alt: "Your photo" + (msg.name ? ": " + msg.name : "") }));
    else bubble.append(el("p", { class: "text", text: "Photo: " + (msg.name || "your photo") }));
    return bubble;
  }

  function thumbUrl(msg) {
    if (blobUrls.has(msg.id)) return blobUrls.get(msg.id);
    if (typeof msg.thumb !== "string" || !msg.thumb.startsWith("data:image/jpeg;base64,")) return null;
    try {
      const bin = atob(msg.thumb.slice(msg.thumb.indexOf(",") + 1));
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      const url = URL.createObjectURL(new Blob([bytes], { type: "image/jpeg" }));
      blobUrls.set(msg.id, url);
      return url;
    } catch (err) {
      return null;
    }
  }

  function section(title, sub, ...body) {
    return el("section", { class: "panel" },
      el("header", { class: "panel-head" }, el("h2", { text: title }), sub ? el("p", { class: "muted small", text: sub }) : null),
      ...body);
  }

  function renderResults(msg) {
    if (!Array.isArray(msg.garments)) return renderPlainResults(msg); // history from an older page
    const view = garmentView(msg);
    return el("section", { class: "panel results", "aria-busy": busyResults.has(msg.id) ? "true" : null },
      resultsHead(msg),
      el("div", { class: "results-layout" + (view ? "" : " no-view") }, view, resultsBody(msg)));
  }

  function renderPlainResults(msg) {
    const items = msg.items || [];
    if (!items.length) return el("div", { class: "bubble" }, el("p", { class: "text", text: "No matching items found." }));
    return section(plainTitle(items), backboneLine(msg), grid(items, { rate: true }));
  }

  function plainTitle(items) {
    return items.length === 1 ? "The most similar item" : `The ${items.length} most similar items`;
  }

  function backboneLine(msg) {
    return msg.backbone ? `Matched by appearance with ${msg.backbone}. Rate them to teach me your taste.` : null;
  }

  function resultsHead(msg) {
    let title, sub = backboneLine(msg);
    if (msg.garments.length) {
      // The server's intro is "I see a coat and shoes. Matches for the coat (1 of 2):";
      // the second sentence goes above the cards.
      const intro = String(msg.intro || "");
      const first = msg.first_showing || "";
      title = first && intro.endsWith(first) ? intro.slice(0, intro.length - first.length).trim() : intro;
      title = title || `I see ${msg.garments.map((g) => g.label).join(", ")}.`;
    } else if (msg.no_garment) {
      title = config.no_garment;
      sub = config.no_garment_hint;
    } else {
      title = plainTitle(msg.items || []);
    }
    return el("header", { class: "panel-head" }, el("h2", { text: title }),
      sub ? el("p", { class: "muted small", text: sub }) : null);
  }

  function showingText(msg) {
    if (msg.current === SELECTION) return `Matches for ${msg.selection ? msg.selection.label : "your selection"}:`;
    if (msg.showing) return msg.showing;
    if (msg.current === WHOLE) return "Matches for the whole photo:";
    const g = currentGarment(msg);
    return g ? `Matches for the ${g.label} (${g.number} of ${msg.garments.length}):` : "";
  }

  function currentGarment(msg) {
    return msg.garments.find((g) => "g" + g.number === msg.current) || null;
  }

  function resultsBody(msg) {
    const body = el("div", { class: "results-body" });
    if (msg.current === null) { // a photo without clothing, nothing searched yet
      body.append(el("div", { class: "refusal" },
        el("button", { type: "button", class: "button primary", "data-focus": "whole-button",
          onclick: () => choose(msg, WHOLE) }, config.search_whole_photo),
        files.has(msg.photo) ? el("p", { class: "muted small", text: "…or draw a box around what you want me to find." }) : null));
      return body;
    }
    body.append(el("h3", { class: "sub-head showing", text: showingText(msg) }));
    const items = msg.items || [];
    body.append(items.length ? grid(items, { rate: true })
      : el("p", { class: "text muted", text: "No matching items found." }));
    return body;
  }

  function photoSrc(msg) {
    const id = msg.photo;
    if (fileUrls.has(id)) return fileUrls.get(id);
    if (files.has(id)) {
      const url = URL.createObjectURL(files.get(id));
      fileUrls.set(id, url);
      return url;
    }
    const photo = state.messages.find((m) => m.id === id && m.kind === "photo");
    return photo ? thumbUrl(photo) : null; // after a reload: the small thumbnail
  }

  function placeBox(node, box) {
    node.style.left = (box.x0 * 100).toFixed(3) + "%";
    node.style.top = (box.y0 * 100).toFixed(3) + "%";
    node.style.width = ((box.x1 - box.x0) * 100).toFixed(3) + "%";
    node.style.height = ((box.y1 - box.y0) * 100).toFixed(3) + "%";
    return node;
  }

  function garmentView(msg) {
    const src = photoSrc(msg);
    const canDraw = files.has(msg.photo);
    const view = el("div", { class: "garment-view" });
    if (src) {
      const size = Array.isArray(msg.photo_size) ? msg.photo_size : null;
      const img = el("img", { class: "stage-photo", src, alt: "Your photo", draggable: "false",
        width: size ? size[0] : null, height: size ? size[1] : null });
      const stage = el("div", { class: "stage" + (drawing.has(msg.id) ? " drawing" : "") }, img, boxButtons(msg));
      if (canDraw) wireDrawing(stage, msg);
      view.append(stage);
    }
    const chips = garmentChips(msg);
    if (chips) view.append(chips);
    if (canDraw && src) {
      const on = drawing.has(msg.id);
      view.append(el("div", { class: "draw-tools" },
        el("button", { type: "button", class: "chip small draw-toggle", "aria-pressed": on ? "true" : "false",
          "data-focus": "draw", onclick: () => toggleDrawing(msg) }, icon("draw"), on ? "Cancel drawing" : "Draw a box"),
        el("span", { class: "muted small draw-hint", text: on ? "Drag over the photo around what you want me to find."
          : "Search just one part of the photo." })));
    }
    return src || chips ? view : null;
  }

  function boxButtons(msg) {
    const layer = el("div", { class: "stage-boxes" });
    for (const g of msg.garments) {
      const key = "g" + g.number;
      const current = msg.current === key;
      layer.append(placeBox(el("button", {
        type: "button", class: "gbox" + (current ? " current" : ""), "data-key": key, "data-focus": "box:" + key,
        "aria-pressed": current ? "true" : "false", "aria-label": `Garment ${g.number}: ${g.label}`,
        title: `${g.number} · ${g.label}`, onclick: () => choose(msg, key),
      }, el("span", { class: "gbox-num", "aria-hidden": "true", text: String(g.number) })), g.box));
    }
    if (msg.selection) {
      const current = msg.current === SELECTION;
      layer.append(placeBox(el("button", {
        type: "button", class: "gbox mine" + (current ? " current" : ""), "data-key": SELECTION,
        "data-focus": "box:" + SELECTION, "aria-pressed": current ? "true" : "false",
        "aria-label": `The box you drew: ${msg.selection.label}`, title: msg.selection.label,
        onclick: () => choose(msg, SELECTION),
      }, el("span", { class: "gbox-num", "aria-hidden": "true", text: "✎" })), msg.selection.box));
    }
    return layer;
  }

  function garmentChips(msg) {
    if (!msg.garments.length && !msg.selection && msg.current === null) return null;
    const chip = (key, text) => {
      const current = msg.current === key;
      return el("button", { type: "button", class: "chip small gchip" + (current ? " current" : ""), "data-key": key,
        "data-focus": "chip:" + key, "aria-pressed": current ? "true" : "false", onclick: () => choose(msg, key) }, text);
    };
    return el("div", { class: "garment-chips", role: "group", "aria-label": "What to find" },
      msg.garments.map((g) => chip("g" + g.number, `${g.number} · ${g.label}`)),
      msg.selection ? chip(SELECTION, "✎ " + msg.selection.label) : null,
      chip(WHOLE, config.whole_photo));
  }

  // Press, drag, release (mouse, pen or finger: pointer events) while "Draw a box" is on.
  function wireDrawing(stage, msg) {
    let start = null, draft = null, pointer = null;
    const at = (e) => {
      const r = stage.getBoundingClientRect();
      return [clamp01((e.clientX - r.left) / r.width), clamp01((e.clientY - r.top) / r.height)];
    };
    const boxOf = (a, b) => ({ x0: Math.min(a[0], b[0]), y0: Math.min(a[1], b[1]), x1: Math.max(a[0], b[0]), y1: Math.max(a[1], b[1]) });
    const stop = () => { if (draft) draft.remove(); draft = start = pointer = null; };
    stage.addEventListener("pointerdown", (e) => {
      if (!drawing.has(msg.id) || busyResults.has(msg.id) || (e.pointerType === "mouse" && e.button !== 0)) return;
      e.preventDefault();
      stop();
      pointer = e.pointerId;
      start = at(e);
      try { stage.setPointerCapture(pointer); } catch (err) { /* the pointer is gone already */ }
      draft = placeBox(el("div", { class: "draft-box", "aria-hidden": "true" }), boxOf(start, start));
      stage.append(draft);
    });
    stage.addEventListener("pointermove", (e) => {
      if (e.pointerId !== pointer || !draft) return;
      e.preventDefault();
      placeBox(draft, boxOf(start, at(e)));
    });
    stage.addEventListener("pointerup", (e) => {
      if (e.pointerId !== pointer || !start) return;
      const box = boxOf(start, at(e));
      stop();
      if (box.x1 - box.x0 < MIN_BOX || box.y1 - box.y0 < MIN_BOX) {
        toast("Drag a little further to draw a box.");
        return;
      }
      searchRegion(msg, box);
    });
    stage.addEventListener("pointercancel", (e) => { if (e.pointerId === pointer) stop(); });
  }

  function clamp01(v) { return Math.max(0, Math.min(1, Number.isFinite(v) ? v : 0)); }

  function cleanBox(b) {
    if (!b || typeof b !== "object") return { x0: 0, y0: 0, x1: 1, y1: 1 };
    const x0 = clamp01(Number(b.x0)), y0 = clamp01(Number(b.y0));
    return { x0, y0, x1: Math.max(x0, clamp01(Number(b.x1))), y1: Math.max(y0, clamp01(Number(b.y1))) };
  }

  function toggleDrawing(msg) {
    if (drawing.has(msg.id)) drawing.delete(msg.id); else drawing.add(msg.id);
    refresh(msg);
    announce(drawing.has(msg.id) ? "Drag over the photo around what you want me to find." : "Drawing cancelled.");
  }

  /** Re-render one results message in place: the loaded photo and the focus are kept. */
  function refresh(msg) {
    save();
    const old = document.getElementById("m-" + msg.id);
    const node = render(msg);
    if (!old) return;
    const focused = old.contains(document.activeElement) && document.activeElement.dataset
      ? document.activeElement.dataset.focus : null;
    const oldImg = old.querySelector(".stage-photo");
    const newImg = node.querySelector(".stage-photo");
    if (oldImg && newImg && oldImg.src === newImg.src) newImg.replaceWith(oldImg); // no reload, no flicker
    old.replaceWith(node);
    if (focused) {
      const again = node.querySelector(`[data-focus="${CSS.escape(focused)}"]`) || node.querySelector(".gchip.current");
      if (again) again.focus({ preventScroll: true });
    }
  }

  function setBusy(msg, on) {
    if (on) busyResults.add(msg.id); else busyResults.delete(msg.id);
    const node = document.getElementById("m-" + msg.id);
    const panel = node && node.querySelector(".panel");
    if (panel) { if (on) panel.setAttribute("aria-busy", "true"); else panel.removeAttribute("aria-busy"); }
  }

  function resultsFrom(data, photoId) {
    const garments = Array.isArray(data.garments) ? data.garments.map((g) => ({
      number: Number(g.number), group: String(g.group || "other"), label: String(g.label || "item"),
      box: cleanBox(g.box), confidence: Number(g.confidence) || 0,
    })) : [];
    return {
      who: "bot", kind: "results", photo: photoId, backbone: data.backbone, items: data.items || [],
      request_id: Number.isInteger(data.request_id) ? data.request_id : null,
      garments, no_garment: Boolean(data.no_garment),
      photo_size: Array.isArray(data.photo_size) ? data.photo_size.map(Number) : null,
      intro: String(data.intro || ""), showing: String(data.showing || ""), first_showing: String(data.showing || ""),
      current: data.garment !== null && data.garment !== undefined ? "g" + data.garment : (data.no_garment ? null : WHOLE),
      selection: null,
    };
  }

  /** Show another garment of the same photo (or the whole photo, or the drawn box). */
  async function choose(msg, key) {
    if (busyResults.has(msg.id) || key === msg.current) return;
    let requestId = msg.request_id;
    let garment = null;
    if (key === SELECTION) {
      if (!msg.selection) return;
      requestId = msg.selection.request_id;
      garment = 1;
    } else if (key !== WHOLE) {
      garment = Number(key.slice(1));
    }
    if (!requestId) { toast("I no longer have that photo's results. Please send it again.", "error"); return; }
    setBusy(msg, true);
    const res = await api("/api/switch", { method: "POST", json: { request_id: requestId, garment } });
    setBusy(msg, false);
    if (!res.ok) { toast(res.error, "error"); return; }
    msg.items = res.data.items || [];
    msg.current = key;
    msg.showing = key === SELECTION ? "" : String(res.data.showing || "");
    refresh(msg);
    announce(`${showingText(msg)} ${msg.items.length} items.`);
  }

  /** Search a box the visitor drew: the same file again, with the box as ``region``. */
  async function searchRegion(msg, box) {
    const file = files.get(msg.photo);
    drawing.delete(msg.id);
    if (!file) { toast("Please send the photo again to draw a box on it."); refresh(msg); return; }
    const region = {};
    for (const k of ["x0", "y0", "x1", "y1"]) region[k] = Math.round(box[k] * 10000) / 10000;
    setBusy(msg, true);
    refresh(msg);
    const form = new FormData();
    form.append("photo", file, file.name || "photo");
    form.append("region", JSON.stringify(region));
    const res = await api("/api/recommend", { method: "POST", body: form });
    setBusy(msg, false);
    if (!res.ok) { toast(res.error, "error"); refresh(msg); return; }
    const mine = (res.data.garments || [])[0];
    msg.selection = {
      request_id: res.data.request_id, box: mine ? cleanBox(mine.box) : region,
      label: mine && mine.label ? String(mine.label) : "your selection",
    };
    msg.items = res.data.items || [];
    msg.current = SELECTION;
    msg.showing = "";
    refresh(msg);
    announce(`${showingText(msg)} ${msg.items.length} items.`);
  }

  function grid(items, opts) {
    return el("ol", { class: "cards" }, items.map((it) => el("li", null, card(it, opts))));
  }

  function card(it, opts) {
    const id = Number(it.id);
    const title = String(it.title || "Untitled item");
    const href = safeHref(it.link, `/items/${id}`);
    const isShop = Boolean(it.link_is_shop) && /^https?:\/\//i.test(href);
    const img = el("img", { src: `/items/${id}/image`, alt: title, width: 280, height: 280, decoding: "async" });
    img.addEventListener("error", () => img.classList.add("broken"), { once: true });
    const media = el("div", { class: "card-media" }, img,
      it.rank ? el("span", { class: "rank", text: String(it.rank), title: `Rank ${it.rank}` }) : null);
    const meta = [it.brand, it.category, it.color].filter((v) => typeof v === "string" && v).join(" · ");
    const body = el("div", { class: "card-body" },
      el("h3", { class: "card-title", text: title }),
      meta ? el("p", { class: "card-meta", text: meta }) : null,
      el("p", { class: "price", text: it.price_text || "—" }));
    if (typeof it.similarity === "number") {
      const fill = el("span", { class: "sim-fill" });
      fill.style.width = Math.max(0, Math.min(100, it.similarity)) + "%";
      body.append(el("div", { class: "sim" },
        el("span", { class: "sim-track", role: "meter", "aria-valuemin": 0, "aria-valuemax": 100,
          "aria-valuenow": it.similarity, "aria-label": `Similarity to your photo: ${it.similarity}%` }, fill),
        el("span", { class: "sim-label", "aria-hidden": "true", text: `${it.similarity}% similar` })));
    }
    if (Array.isArray(it.offers) && it.offers.length) {
      body.append(el("ul", { class: "offers", "aria-label": "Also sold at" }, it.offers.slice(0, 3).map((o) => {
        const label = `${o.shop || "another shop"} · ${o.price_text || "—"}`;
        const url = safeHref(o.url, null);
        return el("li", null, url ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: label }) : label);
      })));
    }
    const actions = el("div", { class: "card-actions" });
    if (opts && opts.rate) {
      actions.append(rateButton(id, 1, title), rateButton(id, -1, title));
    }
    const shopName = typeof it.shop === "string" && it.shop ? it.shop : "the shop";
    actions.append(el("a", {
      class: "shop-link", href, target: "_blank", rel: "noopener noreferrer",
      "aria-label": isShop ? `“${title}” at ${shopName} (opens in a new tab)` : `Details of “${title}” (opens in a new tab)`,
    }, isShop ? "Shop" : "Details", icon(isShop ? "out" : "page")));
    if (typeof config.telegram_bot === "string" && /^\w{4,32}$/.test(config.telegram_bot)) {  // the same item in the bot
      actions.append(el("a", {
        class: "shop-link tg-link", href: `https://t.me/${config.telegram_bot}?start=item_${id}`, target: "_blank",
        rel: "noopener noreferrer", "aria-label": `“${title}” in the Telegram bot (opens in a new tab)`,
      }, "Telegram", icon("out")));
    }
    body.append(actions);
    return el("article", { class: "card", "data-item-id": id }, media, body);
  }

  function rateButton(id, value, title) {
    const pressed = state.ratings[id] === value;
    const btn = el("button", {
      type: "button",
      class: "rate " + (value > 0 ? "like" : "dislike"),
      "data-item-id": id,
      "data-value": value,
      "aria-pressed": pressed ? "true" : "false",
      "aria-label": (value > 0 ? "Like “" : "Dislike “") + title + "”",
      title: value > 0 ? "More like this" : "Not for me",
    }, icon("up", value > 0 ? "" : "flip"));
    btn.addEventListener("click", () => rate(id, value));
    return btn;
  }

  function renderStyle(msg) {
    const d = msg.data || {};
    const parts = [];
    if (d.collage) {
      const img = el("img", { class: "collage", src: d.collage, alt: "A collage of the catalogue items closest to your style" });
      img.addEventListener("error", () => img.remove(), { once: true });
      parts.push(img);
    }
    if (!d.cold_start && Array.isArray(d.clusters) && d.clusters.length) {
      parts.push(el("ul", { class: "clusters" }, d.clusters.map((c, n) => el("li", { class: n === 0 ? "main" : "" },
        el("span", { class: "cluster-name", text: (n === 0 ? "★ " : "") + c.name }),
        el("span", { class: "cluster-share", text: `${c.share_pct}% of your photos` })))));
      const picks = d.clusters[0].items || [];
      if (picks.length) {
        parts.push(el("h3", { class: "sub-head", text: "Top picks for your style" }), grid(picks, { rate: true }));
      }
      return section("Your style", `Built from ${d.photo_count} photo${d.photo_count === 1 ? "" : "s"}.`, ...parts);
    }
    if (Array.isArray(d.popular) && d.popular.length) parts.push(grid(d.popular, { rate: true }));
    return section("Your style", d.headline || "I need a few more photos to work out your style.", ...parts);
  }

  function renderTrend(msg) {
    const p = msg.progress || {};
    const total = Number(p.shops_total) || 0;
    const searched = Number(p.shops_searched) || 0;
    const pct = total ? Math.round((100 * searched) / total) : (p.done ? 100 : 0);
    const fill = el("span", { class: "sim-fill" });
    fill.style.width = pct + "%";
    const phase = p.done ? (p.error ? "stopped" : "done") : "searching…";
    const parts = [
      el("div", { class: "progress" + (p.done ? "" : " live") },
        el("span", { class: "sim-track wide", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
          "aria-valuenow": pct, "aria-label": "Shops searched" }, fill),
        el("span", { class: "progress-label", text: `Shops searched: ${searched}/${total}` })),
      el("dl", { class: "counts" },
        el("div", null, el("dt", { text: "found" }), el("dd", { text: String(p.found || 0) })),
        el("div", null, el("dt", { text: "indexed" }), el("dd", { text: String(p.indexed || 0) })),
        el("div", null, el("dt", { text: "skipped" }), el("dd", { text: String(p.skipped || 0) }))),
    ];
    if (p.error) parts.push(el("p", { class: "text error-text", text: p.error }));
    if (p.done && Array.isArray(p.best) && p.best.length) {
      parts.push(el("h3", { class: "sub-head", text: "Best new items" }), grid(p.best, { rate: true }));
    }
    return section(`Trend “${p.tag || ""}”: ${phase}`, null, ...parts);
  }

  // ---- actions -----------------------------------------------------------------------
  function say(text) { return add({ who: "user", kind: "text", text }); }
  function reply(text, tone) { return add({ who: "bot", kind: "text", text, tone: tone || null }); }

  function mb(n) { return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1); }

  async function makeThumb(file) {
    try {
      const bitmap = await createImageBitmap(file);
      const scale = Math.min(1, 320 / Math.max(bitmap.width, bitmap.height));
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(bitmap.width * scale));
      canvas.height = Math.max(1, Math.round(bitmap.height * scale));
      const ctx = canvas.getContext("2d");
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      bitmap.close();
      return canvas.toDataURL("image/jpeg", 0.8);
    } catch (err) {
      return null; // a format the browser can't show; the server may still read it
    }
  }

  let busy = false;
  async function sendPhoto(file) {
    if (!file) return;
    if (busy) { toast("One photo at a time, please: I'm still looking at the last one."); return; }
    if (file.size > config.max_image_bytes) {
      reply(`That file is ${mb(file.size)} MB; I can take photos up to ${(config.max_image_bytes / 1e6).toFixed(0)} MB.`, "error");
      return;
    }
    busy = true;
    document.body.classList.add("busy");
    try {
      const thumb = await makeThumb(file);
      const photo = add({ who: "user", kind: "photo", thumb, name: file.name && file.name !== "image.png" ? file.name : "" });
      files.set(photo.id, file);
      const wait = pending("Looking for similar items…");
      const form = new FormData();
      form.append("photo", file, file.name || "photo");
      const res = await api("/api/recommend", { method: "POST", body: form });
      wait.remove();
      if (!res.ok && res.status === 409) { // the catalogue is still being filled: a wait, not an error
        reply(res.error, "info");
        watchCatalogue();
        return;
      }
      if (!res.ok) { reply(res.error, "error"); return; }
      const msg = add(resultsFrom(res.data, photo.id));
      announce(msg.no_garment ? config.no_garment : `${resultsHead(msg).textContent} ${msg.items.length} similar items found.`);
    } finally {
      busy = false;
      document.body.classList.remove("busy");
    }
  }

  async function rate(id, value) {
    const res = await api("/api/feedback", { method: "POST", json: { item_id: id, value } });
    if (!res.ok) { toast(res.error, "error"); return; }
    state.ratings[id] = value;
    save();
    for (const btn of document.querySelectorAll(`button.rate[data-item-id="${id}"]`)) {
      btn.setAttribute("aria-pressed", Number(btn.dataset.value) === value ? "true" : "false");
    }
    toast(res.data.message);
  }

  async function showStyle() {
    say("/style");
    const wait = pending("Looking at your style…");
    const res = await api("/api/style");
    wait.remove();
    if (!res.ok) { reply(res.error, "error"); return; }
    add({ who: "bot", kind: "style", data: res.data });
  }

  async function showAbout() {
    say("/about");
    const res = await api("/api/about");
    if (!res.ok) { reply(res.error, "error"); return; }
    reply(res.data.text);
  }

  async function showTrends() {
    say("/trends");
    const res = await api("/api/trends");
    if (!res.ok) { reply(res.error, "error"); return; }
    reply(res.data.text);
  }

  let trendRunning = false;
  async function runTrend(tag) {
    tag = tag.trim().replace(/\s+/g, " ").slice(0, 80);
    if (!tag) { openTrendDialog(); return; }
    if (trendRunning) { toast("A trend search is already running."); return; }
    say("/trend " + tag);
    if (!config.trend_available && config.trend_unavailable) { reply(config.trend_unavailable, "info"); return; }
    trendRunning = true;
    try {
      const wait = pending("Starting the trend search…");
      const res = await api("/api/trend", { method: "POST", json: { tag }, raw: true });
      wait.remove();
      if (!res.ok) {
        let error = res.error;
        if (res.resp) { try { error = (await res.resp.json()).error; } catch (err) { error = null; } }
        reply(error || `Something went wrong (error ${res.status}). Please try again.`, res.status === 501 ? "info" : "error");
        return;
      }
      const msg = add({ who: "bot", kind: "trend", progress: { tag, done: false, best: [] } });
      const reader = res.resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        let chunk;
        try { chunk = await reader.read(); } catch (err) { break; }
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (!line) continue;
          try { msg.progress = JSON.parse(line); } catch (err) { continue; }
          update(msg);
        }
      }
      if (!msg.progress.done) {
        msg.progress.done = true;
        msg.progress.error = msg.progress.error || "The connection closed before the search finished.";
        update(msg);
      }
      announce(`Trend “${tag}”: ${msg.progress.error ? "stopped" : "done"}.`);
    } finally {
      trendRunning = false;
    }
  }

  function openTrendDialog() {
    const input = $("#trend-tag");
    input.value = "";
    trendDialog.returnValue = "";
    trendDialog.showModal();
    input.focus();
  }

  function openForget() {
    forgetDialog.returnValue = "";
    forgetDialog.showModal();
  }

  async function forgetMe() {
    say("/forget");
    const res = await api("/api/forget", { method: "POST", json: { confirm: true } });
    if (!res.ok) { reply(res.error, "error"); return; }
    for (const url of [...blobUrls.values(), ...fileUrls.values()]) URL.revokeObjectURL(url);
    blobUrls.clear();
    fileUrls.clear();
    files.clear();
    state = { next: state.next, messages: [], ratings: {} };
    for (const node of [...log.children]) if (node.id !== "welcome") node.remove();
    save();
    reply(res.data.message);
  }

  function runCommand(text) {
    const trimmed = text.trim();
    if (!trimmed) return;
    const [head, ...rest] = trimmed.split(/\s+/);
    const arg = rest.join(" ");
    switch (head.toLowerCase()) {
      case "/style": return showStyle();
      case "/trend": return arg ? runTrend(arg) : openTrendDialog();
      case "/trends": return showTrends();
      case "/forget": return openForget();
      case "/about": return showAbout();
      case "/help": case "/start": say(trimmed); return reply(config.help);
      default: say(trimmed); return reply(config.hint);
    }
  }

  // ---- catalogue status (the demo fills the catalogue while the chat already answers) ---
  const CATALOGUE_POLL_MS = 1500;      // how often the line is refreshed while items are added
  const CATALOGUE_DONE_MS = 8000;      // how long "Catalogue: 5,000 items" stays once done
  const CATALOGUE_MAX_FAILURES = 3;    // unanswered polls in a row before the page stops asking
  let catalogueWatching = false;
  const sleep = (ms) => new Promise((resolve) => window.setTimeout(resolve, ms));

  // Polls /api/catalogue while the server says it is adding, and stops once it is not:
  // a catalogue that is complete at page load costs one request and shows nothing.
  async function watchCatalogue() {
    if (catalogueWatching) return;
    catalogueWatching = true;
    const line = $("#catalogue-status");
    const text = $("#catalogue-text");
    const bar = $("#catalogue-progress");
    let shown = false;
    let failures = 0;
    try {
      for (;;) {
        const res = await api("/api/catalogue");
        if (!res.ok) {
          if (++failures >= CATALOGUE_MAX_FAILURES) return;
          await sleep(CATALOGUE_POLL_MS * 2);
          continue;
        }
        failures = 0;
        const c = res.data;
        text.textContent = String(c.text || "");
        if (c.adding) {
          if (Number.isFinite(c.expected) && c.expected > 0) {
            bar.max = c.expected;
            bar.value = Math.min(Number(c.ready) || 0, c.expected);
          } else {
            bar.removeAttribute("value"); // indeterminate: the total isn't known yet
          }
          bar.hidden = false;
          line.hidden = false;
          shown = true;
          await sleep(CATALOGUE_POLL_MS);
          continue;
        }
        bar.hidden = true;
        if (c.state === "failed") {
          line.hidden = false; // stays: the operator should look at the log
        } else if (shown) {
          announce(text.textContent);
          window.setTimeout(() => { line.hidden = true; }, CATALOGUE_DONE_MS);
        }
        return;
      }
    } finally {
      catalogueWatching = false;
    }
  }

  // ---- wiring ------------------------------------------------------------------------
  function imageFrom(list) {
    for (const file of list || []) if (file && (!file.type || file.type.startsWith("image/"))) return file;
    return list && list.length ? list[0] : null;
  }

  function wire() {
    $("#attach").addEventListener("click", () => fileInput.click());
    $("#dropzone").addEventListener("click", () => fileInput.click());
    fileInput.addEventListener("change", () => {
      const file = fileInput.files && fileInput.files[0];
      fileInput.value = "";
      if (file) sendPhoto(file);
    });
    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = textInput.value;
      textInput.value = "";
      runCommand(text);
    });
    for (const btn of document.querySelectorAll(".actions [data-command]")) {
      btn.addEventListener("click", () => runCommand(btn.dataset.command));
    }
    forgetDialog.addEventListener("close", () => { if (forgetDialog.returnValue === "confirm") forgetMe(); });
    trendDialog.addEventListener("close", () => {
      if (trendDialog.returnValue === "search") runTrend($("#trend-tag").value);
    });
    $("#trend-cancel").addEventListener("click", () => trendDialog.close("cancel"));
    for (const chip of trendDialog.querySelectorAll("[data-tag]")) {
      chip.addEventListener("click", () => { $("#trend-tag").value = chip.dataset.tag; $("#trend-tag").focus(); });
    }

    let depth = 0;
    const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
    document.addEventListener("dragenter", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth += 1;
      overlay.hidden = false;
    });
    document.addEventListener("dragover", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
    });
    document.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (!depth) overlay.hidden = true;
    });
    document.addEventListener("drop", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      overlay.hidden = true;
      sendPhoto(imageFrom(e.dataTransfer.files));
    });
    document.addEventListener("keydown", (e) => { // Escape leaves "draw a box" mode
      if (e.key !== "Escape" || !drawing.size) return;
      for (const id of [...drawing]) {
        const msg = state.messages.find((m) => m.id === id);
        if (msg) toggleDrawing(msg); else drawing.delete(id);
      }
    });
    document.addEventListener("paste", (e) => {
      const files = e.clipboardData && e.clipboardData.files;
      const file = files && files.length ? imageFrom(files) : null;
      if (file) { e.preventDefault(); sendPhoto(file); }
    });
  }

  async function start() {
    wire();
    restore();
    const res = await api("/api/config");
    if (res.ok) config = Object.assign(config, res.data);
    if (config.forget_confirm) $("#forget-text").textContent = config.forget_confirm; // shared wording
    document.body.classList.add("ready");
    watchCatalogue();
  }

  start();
})();
