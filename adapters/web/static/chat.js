// The web chat: one conversation per tab, replies streamed over server-sent events and rendered as sanitized
// Markdown (marked + DOMPurify, vendored next to this file), resends with the same message_id after a failure.
(() => {
  "use strict";

  const SESSION_KEY = "supportbot.session";
  // The message being answered, kept until its answer is on the page, so a reload mid-answer resends it.
  const PENDING_KEY = "supportbot.pending";
  const TOKEN_KEY = "supportbot.token";
  // Pauses before each automatic resend once the server has seen a message (a dropped stream, 409, 503): about a
  // minute in all, enough for a slow model turn to finish or a server to restart. Then the user gets a Retry.
  const RESEND_WAITS_MS = [500, 1000, 2000, 3000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000];
  const MAX_RETRY_AFTER_MS = 5000;
  const NEAR_BOTTOM_PX = 80;

  const log = document.getElementById("log");
  const thread = document.getElementById("thread");
  const input = document.getElementById("input");
  const sendButton = document.getElementById("send");
  const form = document.getElementById("form");
  const announcer = document.getElementById("announcer");
  const touch = window.matchMedia("(pointer: coarse)").matches;

  let botName = "Supportbot";
  let topics = [];
  let busy = false;
  let inFlight = null;

  function newId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    // crypto.randomUUID needs a secure context; a plain-http intranet address still has getRandomValues.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // One session per tab: sessionStorage survives reloads of this tab, not other tabs.
  let sessionId = sessionStorage.getItem(SESSION_KEY) || newId();
  sessionStorage.setItem(SESSION_KEY, sessionId);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgIcon(paths) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("fill", "none");
    svg.setAttribute("stroke", "currentColor");
    svg.setAttribute("stroke-width", "2");
    svg.setAttribute("stroke-linecap", "round");
    svg.setAttribute("stroke-linejoin", "round");
    svg.setAttribute("aria-hidden", "true");
    for (const d of paths) {
      const path = document.createElementNS(ns, "path");
      path.setAttribute("d", d);
      svg.append(path);
    }
    return svg;
  }
  const COPY_ICON = ["M8 8h11v11H8z", "M16 8V5H5v11h3"];

  // ---- Markdown -------------------------------------------------------------------------------------------

  const escapeHtml = (s) =>
    String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  marked.use({
    gfm: true,
    breaks: true,
    renderer: {
      // Replies are Markdown, not HTML: HTML in a reply shows as the text it is.
      html({ text }) {
        return escapeHtml(text);
      },
      // An image would fetch a URL of the model's choosing as soon as it renders (a way to leak the
      // conversation); a link is only followed when the user chooses to.
      image({ href, text }) {
        return `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`;
      },
      // Each message is announced by an h2 ("Supportbot said:"); a reply's own headings sit below it.
      heading({ tokens, depth }) {
        const level = Math.min(depth + 2, 6);
        return `<h${level}>${this.parser.parseInline(tokens)}</h${level}>\n`;
      },
    },
  });

  const PURIFY = {
    ALLOWED_TAGS: ["a", "blockquote", "br", "code", "del", "em", "h3", "h4", "h5", "h6", "hr", "input", "li", "ol",
      "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul"],
    ALLOWED_ATTR: ["href", "title", "align", "class", "start", "type", "checked", "disabled"],
    RETURN_DOM_FRAGMENT: true,
  };
  // DOMPurify already drops javascript: and other script URLs; links are narrowed further to the web, mail and
  // phone numbers (a relative link in a reply would point into this server), and open in a new tab without
  // handing this page to the one they open.
  const LINK = /^(?:https?:|mailto:|tel:)/i;
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.nodeName !== "A") return;
    if (!LINK.test(node.getAttribute("href") || "")) {
      node.removeAttribute("href");
      return;
    }
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  });

  function decorate(root) {
    for (const pre of root.querySelectorAll("pre")) {
      const code = pre.querySelector("code");
      const language = ((code && code.className.match(/language-([\w+#.-]+)/)) || [])[1];
      const block = el("div", "code-block");
      const bar = el("div", "code-bar");
      const copy = el("button", "copy");
      copy.type = "button";
      copy.setAttribute("aria-label", language ? `Copy ${language} code` : "Copy code");
      copy.append(svgIcon(COPY_ICON), el("span", "copy-label", "Copy"));
      bar.append(el("span", "code-lang", language || "code"), copy);
      pre.replaceWith(block);
      block.append(bar, pre);
    }
    for (const table of root.querySelectorAll("table")) {
      // A wide table scrolls on its own instead of widening the page; tabindex lets keyboards scroll it.
      const wrap = el("div", "table-wrap");
      wrap.tabIndex = 0;
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", "Table");
      table.replaceWith(wrap);
      wrap.append(table);
    }
  }

  function renderTokens(tokens, from, to) {
    const slice = tokens.slice(from, to);
    slice.links = tokens.links;
    const fragment = DOMPurify.sanitize(marked.parser(slice), PURIFY);
    decorate(fragment);
    return fragment;
  }

  // Renders a growing Markdown text into a container block by block. A block that later text can no longer change
  // (another block follows it) is rendered once and kept; only the last block is redrawn as chunks arrive, so the
  // nodes a reader or a screen reader is on stay put.
  class MarkdownView {
    constructor(container) {
      this.container = container;
      this.settled = [];
      this.tail = [];
    }

    reset() {
      for (const block of this.settled) block.nodes.forEach((n) => n.remove());
      this.tail.forEach((n) => n.remove());
      this.settled = [];
      this.tail = [];
    }

    place(tokens, from, to) {
      const fragment = renderTokens(tokens, from, to);
      const nodes = Array.from(fragment.childNodes);
      this.container.append(fragment);
      return nodes;
    }

    show(text, final) {
      const tokens = marked.lexer(text);
      if (final && Object.keys(tokens.links).length) this.reset(); // a late [ref]: definition changes earlier blocks
      let keep = 0;
      while (keep < this.settled.length && keep < tokens.length && tokens[keep].raw === this.settled[keep].raw) keep++;
      for (const block of this.settled.splice(keep)) block.nodes.forEach((n) => n.remove());
      this.tail.forEach((n) => n.remove());
      this.tail = [];
      let open = tokens.length;
      if (!final) {
        open = tokens.length - 1;
        while (open > 0 && tokens[open].type === "space") open--;
      }
      for (let i = keep; i < open; i++) this.settled.push({ raw: tokens[i].raw, nodes: this.place(tokens, i, i + 1) });
      if (open < tokens.length) this.tail = this.place(tokens, Math.max(open, keep), tokens.length);
    }
  }

  // ---- Messages -------------------------------------------------------------------------------------------

  function nearBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_BOTTOM_PX;
  }
  function toBottom() {
    log.scrollTop = log.scrollHeight;
  }
  function keepingScroll(change) {
    const follow = nearBottom();
    change();
    if (follow) toBottom();
  }

  function announce(text) {
    announcer.textContent = "";
    // A fresh text node in the next frame is announced even when it repeats the previous one.
    requestAnimationFrame(() => { announcer.textContent = text; });
  }

  function removeWelcome() {
    const welcome = thread.querySelector(".welcome");
    if (welcome) welcome.remove();
  }

  function message(role) {
    removeWelcome();
    const article = el("article", "msg " + role);
    article.append(el("h2", "sr-only", (role === "user" ? "You" : botName) + " said:"));
    thread.append(article);
    return article;
  }

  function userMessage(text) {
    const article = message("user");
    article.append(el("div", "bubble", text));
    return article;
  }

  function botAvatar() {
    const avatar = el("img", "avatar");
    avatar.src = "/static/favicon.svg";
    avatar.alt = "";
    return avatar;
  }

  class Reply {
    constructor() {
      this.article = message("assistant");
      this.body = el("div", "md");
      this.typing = el("div", "typing");
      this.typing.setAttribute("aria-hidden", "true");
      this.typing.append(el("span"), el("span"), el("span"));
      this.note = el("p", "note");
      this.article.append(botAvatar(), this.typing, this.body, this.note);
      this.article.setAttribute("aria-busy", "true");
      this.view = new MarkdownView(this.body);
      this.text = "";
      this.frame = 0;
    }

    restart() {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
      this.text = "";
      this.view.reset();
      this.note.textContent = "";
    }

    add(chunk) {
      this.text += chunk;
      this.typing.hidden = true;
      // Chunks arriving within one frame are drawn together.
      if (!this.frame) {
        this.frame = requestAnimationFrame(() => {
          this.frame = 0;
          keepingScroll(() => this.view.show(this.text, false));
        });
      }
    }

    finish(text, { quiet = false } = {}) {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
      this.text = text;
      keepingScroll(() => {
        this.view.show(text, true);
        this.typing.remove();
        this.note.textContent = "";
      });
      this.article.removeAttribute("aria-busy");
      if (!quiet) announce(`${botName} said: ${this.body.textContent.trim()}`);
    }

    waiting(note) {
      this.typing.hidden = false;
      this.note.textContent = note;
    }

    remove() {
      cancelAnimationFrame(this.frame);
      this.article.remove();
    }
  }

  function showWelcome() {
    thread.replaceChildren();
    const welcome = el("section", "welcome empty");
    const hero = el("img", "hero");
    hero.src = "/static/favicon.svg";
    hero.alt = "";
    welcome.append(hero, el("h2", null, "How can I help?"));
    const intro = el("p", null, "Describe your IT problem in your own words.");
    welcome.append(intro);
    if (topics.length) {
      intro.textContent = "Describe your IT problem in your own words, or pick a topic:";
      const list = el("ul", "topics");
      list.setAttribute("aria-label", "Help topics");
      for (const topic of topics) {
        const item = el("li");
        const button = el("button", null, topic);
        button.type = "button";
        button.addEventListener("click", () => {
          input.value = topic;
          form.requestSubmit();
        });
        item.append(button);
        list.append(item);
      }
      welcome.append(list);
    }
    thread.append(welcome);
  }

  // ---- Talking to the server ------------------------------------------------------------------------------

  function authHeaders(extra) {
    const h = Object.assign({}, extra || {});
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  async function api(path, options) {
    const opts = options || {};
    const response = await fetch(path, Object.assign({}, opts, { headers: authHeaders(opts.headers) }));
    if (response.status === 401) {
      const token = prompt("This helpdesk needs an access token:");
      if (token) {
        localStorage.setItem(TOKEN_KEY, token);
        return api(path, options);
      }
    }
    return response;
  }

  async function reasonOf(response) {
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") return body.error;
    } catch (error) {
      // Not JSON (a proxy's error page): the status line says enough.
    }
    return `the server answered ${response.status} ${response.statusText}`.trim();
  }

  function retryAfterMs(response) {
    const seconds = Number(response.headers.get("Retry-After"));
    return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds * 1000, MAX_RETRY_AFTER_MS) : null;
  }

  function pause(ms, signal) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
    });
  }

  function parseEvent(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    return { event, data: data.length ? JSON.parse(data.join("\n")) : null };
  }

  // Reads one SSE answer into the reply. Returns the "done" event's data, or null when the stream ended early.
  async function readStream(body, reply, signal) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return null;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const { event, data } = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event === "chunk" && data && typeof data.text === "string") reply.add(data.text);
          else if (event === "done" && data) return data;
        }
      }
    } catch (error) {
      if (signal.aborted) throw error;
      return null;
    }
  }

  // One POST of a turn. The outcome says whether to stop (done / fail) or to resend after a pause.
  async function attempt(turn, reply, signal) {
    let response;
    try {
      response = await api("/api/chat", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ session_id: sessionId, message: turn.text, message_id: turn.id }),
        signal,
      });
    } catch (error) {
      if (signal.aborted) throw error;
      // Nothing reached the server unless an earlier attempt did; a first failure is shown straight away.
      return { resend: turn.seen, reason: "Could not reach the helpdesk." };
    }
    if (response.status === 409) {
      // The first attempt of this message_id is still being answered; its answer is stored when it ends.
      turn.seen = true;
      return { resend: true, reason: "Your message is still being answered." };
    }
    if (response.status === 429 || response.status === 503) {
      turn.seen = true;
      return { resend: true, after: retryAfterMs(response), reason: sentence(await reasonOf(response)) };
    }
    if (!response.ok || !response.body) {
      return { resend: false, rejected: response.status < 500, reason: await reasonOf(response) };
    }
    turn.seen = true;
    reply.restart();
    const done = await readStream(response.body, reply, signal);
    if (done) return { done };
    return { resend: true, reason: "The connection dropped." };
  }

  function setBusy(value) {
    busy = value;
    sendButton.disabled = value;
    for (const button of thread.querySelectorAll(".delivery button")) button.disabled = value;
  }

  function clearNotices() {
    for (const notice of thread.querySelectorAll(".notice")) notice.remove();
  }

  function sentence(text) {
    const trimmed = text.trim();
    return trimmed.charAt(0).toUpperCase() + trimmed.slice(1) + (/[.!?]$/.test(trimmed) ? "" : ".");
  }

  function showFailure(turn, reason) {
    turn.article.classList.add("failed");
    const row = el("div", "delivery");
    row.setAttribute("role", "alert");
    row.append(el("span", null, `${turn.seen ? "No answer arrived." : "Not sent."} ${sentence(reason)}`));
    const retry = el("button", "retry", "Retry");
    retry.type = "button";
    retry.addEventListener("click", () => {
      if (busy) return;
      input.focus(); // the button goes away with the failure
      deliver(turn);
    });
    row.append(retry);
    turn.article.append(row);
  }

  function showRejected(turn, reason) {
    // The server refused this text itself (too long, malformed): give it back to edit, nothing to retry.
    turn.article.remove();
    if (!input.value) {
      input.value = turn.text;
      autosize();
    }
    const notice = el("p", "notice", `Could not send. ${sentence(reason)}`);
    notice.setAttribute("role", "alert");
    thread.append(notice);
  }

  function readPending() {
    try {
      const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
      return pending && pending.session === sessionId && typeof pending.text === "string" ? pending : null;
    } catch (error) {
      return null;
    }
  }

  function forgetPending(turn) {
    const pending = readPending();
    if (!pending || pending.id === turn.id) sessionStorage.removeItem(PENDING_KEY);
  }

  async function deliver(turn) {
    sessionStorage.setItem(PENDING_KEY, JSON.stringify({ session: sessionId, id: turn.id, text: turn.text }));
    const controller = new AbortController();
    inFlight = controller;
    setBusy(true);
    clearNotices();
    turn.article.classList.remove("failed");
    turn.article.querySelectorAll(".delivery").forEach((row) => row.remove());
    const reply = new Reply();
    toBottom();
    announce(`${botName} is typing…`);
    let resends = 0;
    try {
      for (;;) {
        const outcome = await attempt(turn, reply, controller.signal);
        if (outcome.done) {
          forgetPending(turn);
          reply.finish(typeof outcome.done.reply === "string" ? outcome.done.reply : reply.text);
          return;
        }
        if (!outcome.resend || resends >= RESEND_WAITS_MS.length) {
          reply.remove();
          if (outcome.rejected) {
            forgetPending(turn);
            showRejected(turn, outcome.reason);
          } else {
            showFailure(turn, outcome.reason);
          }
          return;
        }
        reply.waiting(`${outcome.reason} Trying again…`);
        await pause(outcome.after || RESEND_WAITS_MS[resends], controller.signal);
        resends += 1;
      }
    } catch (error) {
      if (!controller.signal.aborted) throw error;
    } finally {
      if (inFlight === controller) {
        inFlight = null;
        setBusy(false);
      }
    }
  }

  // ---- Composer -------------------------------------------------------------------------------------------

  function autosize() {
    input.style.height = "auto";
    const limit = parseFloat(getComputedStyle(input).maxHeight) || 240;
    const wanted = input.scrollHeight;
    input.style.height = Math.min(wanted, limit) + "px";
    input.style.overflowY = wanted > limit ? "auto" : "hidden";
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || busy) return;
    input.value = "";
    autosize();
    const turn = { id: newId(), text, seen: false, article: userMessage(text) };
    deliver(turn);
  });

  input.addEventListener("input", autosize);
  input.addEventListener("keydown", (event) => {
    // On phones Enter makes a new line, as in their messaging apps; the button sends.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !touch) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  if (touch) input.setAttribute("enterkeyhint", "enter");

  thread.addEventListener("click", async (event) => {
    const button = event.target.closest("button.copy");
    if (!button) return;
    const code = button.closest(".code-block").querySelector("pre");
    const label = button.querySelector(".copy-label");
    try {
      await copyText(code.textContent);
      label.textContent = "Copied";
    } catch (error) {
      window.getSelection().selectAllChildren(code);
      label.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { label.textContent = "Copy"; }, 2000);
  });

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const area = el("textarea", "offscreen");
    area.value = text;
    area.setAttribute("readonly", "");
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    if (!copied) throw new Error("copy refused");
  }

  document.getElementById("new").addEventListener("click", () => {
    if (inFlight) inFlight.abort();
    sessionStorage.removeItem(PENDING_KEY);
    sessionId = newId();
    sessionStorage.setItem(SESSION_KEY, sessionId);
    showWelcome();
    input.focus();
  });

  // ---- Start ----------------------------------------------------------------------------------------------

  async function loadInfo() {
    try {
      const response = await api("/api/info");
      if (!response.ok) return;
      const data = await response.json();
      if (typeof data.name === "string" && data.name) {
        botName = data.name;
        document.getElementById("title").textContent = botName;
        document.title = `${botName} — IT helpdesk`;
        for (const label of thread.querySelectorAll(".msg.assistant > h2")) label.textContent = `${botName} said:`;
      }
      if (Array.isArray(data.topics)) topics = data.topics.filter((t) => typeof t === "string");
      if (data.offline) {
        document.getElementById("disclaimer").textContent = "Answers come from the IT help articles.";
      }
      if (thread.querySelector(".welcome")) showWelcome();
    } catch (error) {
      // The page works with its defaults; a send will say if the server is unreachable.
    }
  }

  async function restore() {
    showWelcome();
    const pending = readPending();
    let messages = null;
    try {
      const response = await api("/api/sessions/" + encodeURIComponent(sessionId) + "/history");
      if (response.ok) messages = (await response.json()).messages;
    } catch (error) {
      // Unreachable: a pending message is shown with its Retry below, and a send will say so too.
    }
    let lastUser = null;
    for (const m of messages || []) {
      if (m.role === "user") lastUser = userMessage(m.content);
      else if (m.role === "assistant") {
        lastUser = null;
        new Reply().finish(m.content, { quiet: true });
      }
    }
    toBottom();
    if (!pending) return;
    const last = messages && messages.length ? messages[messages.length - 1] : null;
    const answered = messages && messages.length > 1 && last.role === "assistant" &&
      messages[messages.length - 2].content.trim() === pending.text;
    if (answered) {
      sessionStorage.removeItem(PENDING_KEY);
      return;
    }
    // The page went away before the answer arrived: ask again under the same message_id, which the server
    // answers with the stored reply once the first attempt is done.
    const stored = lastUser && last.content.trim() === pending.text;
    const article = stored ? lastUser : userMessage(pending.text);
    const turn = { id: pending.id, text: pending.text, seen: Boolean(stored), article };
    if (messages === null) showFailure(turn, "Could not reach the helpdesk.");
    else deliver(turn);
  }

  loadInfo();
  restore();
  autosize();
})();
