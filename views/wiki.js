// Progressive enhancement only: every page works without this file.
"use strict";

const WIDE = window.matchMedia("(min-width: 60rem)");

// The sidebar and the table of contents are <details>: open on wide screens, folded on phones.
for (const box of document.querySelectorAll("details[data-open-wide]")) {
  if (WIDE.matches) { box.open = true; }
}

// Forms that remove something ask first.
for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
  });
}

// An editor that was changed asks before the page is left unsaved; Ctrl/Cmd+S saves it.
for (const form of document.querySelectorAll("form[data-unsaved-warning]")) {
  let dirty = false;
  form.addEventListener("input", () => { dirty = true; });
  form.addEventListener("submit", () => { dirty = false; });
  window.addEventListener("beforeunload", (event) => {
    if (dirty) { event.preventDefault(); event.returnValue = ""; }
  });
  form.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") {
      event.preventDefault();
      form.requestSubmit(form.querySelector("button[type=submit]:not([name])"));
    }
  });
}

function Editor(form) {
  this.form = form;
  this.text = form.querySelector("textarea[name=content]");
  this.status = form.querySelector(".status");
  this.preview = form.querySelector(".preview");
  this.previewBody = form.querySelector(".preview-body");
  this.maxBytes = Number(form.dataset.maxBytes);
  this.encoder = new TextEncoder();
  this.restoreDraft();
  this.setUpToolbar();
  this.setUpPreview();
  this.setUpAttachments();
  this.setUpLimit();
  form.addEventListener("submit", (event) => {
    if (event.submitter && event.submitter.name === "preview") { return; }
    if (this.bytes() > this.maxBytes) {
      event.preventDefault();
      this.say(`The page is ${this.bytes().toLocaleString()} bytes; a page holds at most ` +
               `${this.maxBytes.toLocaleString()}. Shorten it, or split it into several pages.`, true);
      return;
    }
    this.keepDraft();
  });
}

Editor.prototype.say = function (message, isError) {
  this.status.textContent = message;
  this.status.classList.toggle("error", Boolean(isError));
};

Editor.prototype.bytes = function (text) {
  return this.encoder.encode(text === undefined ? this.text.value : text).length;
};

// --- nothing typed is lost to a size limit: a copy of the text is kept in this tab's
// sessionStorage while it is being sent. If a server in front refuses the body (waitress's 413
// for bodies over --max-body-bytes answers without robotwtf seeing it), opening the editor again
// brings the text back. The saved page removes the copy.
Editor.prototype.pagePath = function () {
  const field = this.form.querySelector("input[name=path]");
  return field ? field.value.trim() : decodeURIComponent(this.form.getAttribute("action").split("/-/edit/")[1]);
};

// The copy belongs to this editor and the revision it is based on: a page saved since is not
// overwritten with an old copy.
Editor.prototype.draftKey = function () {
  const base = this.form.querySelector("[name=base_revision]");
  return "robotwtf-draft " + this.form.getAttribute("action") + " " + (base ? base.value : "");
};

Editor.prototype.keepDraft = function () {
  const message = this.form.querySelector("[name=message]");
  try {
    sessionStorage.setItem(this.draftKey(), JSON.stringify({
      page: this.pagePath(), content: this.text.value, message: message ? message.value : "", at: Date.now()}));
  } catch (error) { /* storage full or off: the server still answers with the text where it can */ }
};

Editor.prototype.restoreDraft = function () {
  let draft = null;
  try { draft = JSON.parse(sessionStorage.getItem(this.draftKey())); } catch (error) { return; }
  if (!draft || draft.content === this.text.value) { return; }
  const path = this.form.querySelector("input[name=path]");
  if (path && path.value.trim() && path.value.trim() !== draft.page) { return; }
  if (path) { path.value = draft.page; }
  this.text.value = draft.content;
  const message = this.form.querySelector("[name=message]");
  if (message && draft.message) { message.value = draft.message; }
  this.say("Your text from the last try to save was restored here: it was not saved. Shorten it, then save.", true);
};

// --- the toolbar and the shortcuts
Editor.prototype.replaceSelection = function (before, middle, after, selectMiddle) {
  const text = this.text;
  const start = text.selectionStart, end = text.selectionEnd;
  const chosen = text.value.slice(start, end) || middle;
  text.focus();
  text.setSelectionRange(start, end);
  const inserted = before + chosen + after;
  // execCommand keeps the browser's undo history; setRangeText where it is missing.
  if (!document.execCommand || !document.execCommand("insertText", false, inserted)) {
    text.setRangeText(inserted, start, end, "end");
    text.dispatchEvent(new Event("input", {bubbles: true}));
  }
  if (selectMiddle) { text.setSelectionRange(start + before.length, start + before.length + chosen.length); }
};

Editor.prototype.lineStart = function () {
  const text = this.text;
  const at = text.selectionStart;
  return at === 0 || text.value[at - 1] === "\n" ? "" : "\n";
};

Editor.prototype.tool = function (name) {
  const nl = this.lineStart();
  const tools = {
    heading: () => this.replaceSelection(nl + "## ", "Heading", "", true),
    bold: () => this.replaceSelection("**", "bold text", "**", true),
    italic: () => this.replaceSelection("*", "italic text", "*", true),
    link: () => this.replaceSelection("[", "link text", "](https://)", true),
    wikilink: () => this.replaceSelection("[[", "Page name", "]]", true),
    list: () => this.replaceSelection(nl + "- ", "item", "\n", true),
    task: () => this.replaceSelection(nl + "- [ ] ", "to do", "\n", true),
    code: () => this.text.value.slice(this.text.selectionStart, this.text.selectionEnd).includes("\n")
      ? this.replaceSelection(nl + "```\n", "", "\n```\n", true)
      : this.replaceSelection("`", "code", "`", true),
    table: () => this.replaceSelection(nl + "| Column | Column |\n| --- | --- |\n| ", "text", " | text |\n", true),
    image: () => this.replaceSelection("![", "description", "](photo.png)", true),
    attach: () => this.form.querySelector(".attach-input").click(),
  };
  if (tools[name]) { tools[name](); }
};

Editor.prototype.setUpToolbar = function () {
  const toolbar = this.form.querySelector(".toolbar");
  toolbar.hidden = false;
  if (!this.form.dataset.uploadUrl) { toolbar.querySelector("[data-tool=attach]").remove(); }
  toolbar.addEventListener("click", (event) => {
    const button = event.target.closest("[data-tool]");
    if (button) { this.tool(button.dataset.tool); }
  });
  const keys = {b: "bold", i: "italic", k: "link"};
  this.text.addEventListener("keydown", (event) => {
    const tool = keys[event.key.toLowerCase()];
    if ((event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && tool) {
      event.preventDefault();
      this.tool(tool);
    }
  });
};

// --- live preview: the server renders the text with the page view's own renderer
Editor.prototype.setUpPreview = function () {
  const switcher = this.form.querySelector(".pane-switch");
  switcher.hidden = false;
  this.form.classList.add("live");
  this.preview.hidden = false;
  switcher.addEventListener("click", (event) => {
    const button = event.target.closest("[data-pane]");
    if (!button) { return; }
    const showPreview = button.dataset.pane === "preview";
    this.form.classList.toggle("show-preview", showPreview);
    for (const other of switcher.querySelectorAll("[data-pane]")) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    if (showPreview) { this.refreshPreview(); }
  });
  let timer = null;
  this.text.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => this.refreshPreview(), 300);
  });
  this.refreshPreview();
};

Editor.prototype.refreshPreview = async function () {
  const body = new FormData();
  body.set("csrf_token", this.form.querySelector("[name=csrf_token]").value);
  body.set("path", this.pagePath());
  body.set("content", this.text.value);
  const asked = (this.asked = (this.asked || 0) + 1);
  try {
    const response = await fetch(this.form.dataset.previewUrl, {
      method: "POST", body: new URLSearchParams(body), headers: {Accept: "application/json"},
      credentials: "same-origin"});
    if (asked !== this.asked) { return; }
    if (response.ok) {
      this.previewBody.innerHTML = await response.text();
      this.form.dispatchEvent(new CustomEvent("previewed", {bubbles: true}));
    } else {
      this.previewBody.textContent = "No preview: " + await errorMessage(response);
    }
  } catch (error) {
    if (asked === this.asked) { this.previewBody.textContent = "No preview: the server could not be reached."; }
  }
};

async function errorMessage(response) {
  try {
    return (await response.json()).message;
  } catch (error) {
    return `the server answered ${response.status} ${response.statusText}.`;
  }
}

// --- attachments: a file picked, dropped or pasted is uploaded to this page and its Markdown
// inserted where the cursor is. A page that is not saved yet has nowhere to attach to.
Editor.prototype.setUpAttachments = function () {
  const input = this.form.querySelector(".attach-input");
  input.addEventListener("change", () => { this.attach(Array.from(input.files)); input.value = ""; });
  this.text.addEventListener("dragover", (event) => {
    if (event.dataTransfer.types.includes("Files")) { event.preventDefault(); }
  });
  this.text.addEventListener("drop", (event) => {
    const files = Array.from(event.dataTransfer.files);
    if (files.length) { event.preventDefault(); this.attach(files); }
  });
  this.text.addEventListener("paste", (event) => {
    const files = Array.from(event.clipboardData.files);
    if (files.length && !event.clipboardData.getData("text/plain")) {
      event.preventDefault();
      this.attach(files.map(pastedName));
    }
  });
};

function pastedName(file) {
  if (file.name && file.name !== "image.png") { return file; }
  const stamp = new Date().toISOString().slice(0, 19).replace("T", "-").replaceAll(":", "");
  const ext = (file.type.split("/")[1] || "png").replace("jpeg", "jpg").replace(/[^a-z0-9]/g, "");
  return new File([file], `pasted-${stamp}.${ext}`, {type: file.type});
}

Editor.prototype.attach = async function (files) {
  const url = this.form.dataset.uploadUrl;
  if (!url) {
    this.say("Save the page first; then paste, drop or pick files to attach them to it.", true);
    return;
  }
  for (const file of files) {
    if (file.size > 10 * 1024 * 1024) {
      this.say(`${file.name} is larger than 10 MB, the most an attachment can be; it was not attached.`, true);
      continue;
    }
    this.say(`Attaching ${file.name}…`);
    const body = new FormData();
    body.set("csrf_token", this.form.querySelector("[name=csrf_token]").value);
    body.set("keep_existing", "1");
    body.set("file", file, file.name);
    try {
      const response = await fetch(url, {method: "POST", body, headers: {Accept: "application/json"},
                                         credentials: "same-origin"});
      if (!response.ok) { this.say(`${file.name} was not attached: ${await errorMessage(response)}`, true); continue; }
      const stored = await response.json();
      // Attaching made a revision; the text this editor holds is still based on the page's text.
      const base = this.form.querySelector("[name=base_revision]");
      if (base && stored.previous_revision && base.value === stored.previous_revision) { base.value = stored.revision; }
      // An image goes on a line of its own; a link to a file stays in the sentence being written.
      if (stored.content_type.startsWith("image/")) {
        this.replaceSelection(this.lineStart() + stored.markdown + "\n", "", "", false);
      } else {
        this.replaceSelection(stored.markdown, "", "", false);
      }
      this.say(`Attached ${stored.filename} to this page.`);
    } catch (error) {
      this.say(`${file.name} was not attached: the server could not be reached.`, true);
    }
  }
};

// --- the size limit: a paste that would make the page too large is refused before it is sent
Editor.prototype.setUpLimit = function () {
  this.text.addEventListener("paste", (event) => {
    const pasted = event.clipboardData.getData("text/plain");
    if (!pasted) { return; }
    const text = this.text;
    const after = this.bytes() - this.bytes(text.value.slice(text.selectionStart, text.selectionEnd)) +
      this.bytes(pasted);
    if (after > this.maxBytes) {
      event.preventDefault();
      this.say(`Not pasted: the page would be ${after.toLocaleString()} bytes, and a page holds at most ` +
               `${this.maxBytes.toLocaleString()}.`, true);
    }
  });
  let timer = null;
  this.text.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const size = this.bytes();
      if (size > this.maxBytes) {
        this.say(`The page is ${size.toLocaleString()} bytes, over the ${this.maxBytes.toLocaleString()} a page ` +
                 "can hold: it can't be saved until it is shorter.", true);
      } else if (this.status.classList.contains("error") && !this.status.textContent.startsWith("Your text")) {
        this.say("");
      }
    }, 200);
  });
};

// Last: the prototype methods above must exist before the first Editor is made.
for (const form of document.querySelectorAll("form[data-editor]")) { new Editor(form); }

// A page that was saved forgets the drafts kept for it (see Editor.keepDraft).
const saved = document.querySelector("[data-saved-page]");
if (saved) {
  for (const key of Object.keys(sessionStorage)) {
    if (!key.startsWith("robotwtf-draft ")) { continue; }
    try {
      const draft = JSON.parse(sessionStorage.getItem(key));
      if (draft.page === saved.dataset.savedPage) { sessionStorage.removeItem(key); }
    } catch (error) { sessionStorage.removeItem(key); }
  }
}
