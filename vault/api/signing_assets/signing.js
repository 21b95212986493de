// The signing page's behaviour: disclosure and consent first, then the document, then adopt and sign or decline.
// It only calls the JSON endpoints under the page's own URL (the link's token is in location.pathname), so it
// holds no secret of its own and works the same from an emailed link and inside an embedding iframe.
"use strict";

(function () {
  const base = window.location.pathname.replace(/\/+$/, "");
  const $ = (id) => document.getElementById(id);
  const show = (id, on) => { $(id).hidden = !on; };
  let state = null;

  function say(text, isError) {
    const status = $("status");
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  async function call(method, path, body) {
    const init = { method: method, headers: { "Accept": "application/json" }, credentials: "omit" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(base + path, init);
    const text = await response.text();
    const data = text ? JSON.parse(text) : {};
    if (!response.ok) {
      const error = new Error((data && data.message) || ("HTTP " + response.status));
      error.code = data && data.code;
      throw error;
    }
    return data;
  }

  function pageCount(s) {
    return ((s.document && s.document.pages) || []).length;
  }

  function consented(s) {
    return Boolean(s.consent && s.consent.given);
  }

  function recipientStatus(s) {
    return (s.recipient && s.recipient.status) || "";
  }

  function renderDocument(s) {
    const pages = $("pages");
    pages.textContent = "";
    const count = pageCount(s);
    for (let n = 1; n <= count; n += 1) {
      const figure = document.createElement("figure");
      const caption = document.createElement("figcaption");
      caption.textContent = "Page " + n + " of " + count;
      const img = document.createElement("img");
      img.src = base + "/pages/" + n;
      img.alt = "Page " + n + " of the document";
      img.loading = "lazy";
      img.dataset.page = String(n);
      figure.append(caption, img);
      pages.append(figure);
    }
    $("pdf-link").href = base + "/document";
    const list = $("fields");
    list.textContent = "";
    for (const field of (s.recipient && s.recipient.fields) || []) {
      const item = document.createElement("li");
      item.textContent = field.type + " on page " + field.page;
      list.append(item);
    }
  }

  function finish(text) {
    for (const id of ["disclosure", "document", "adopt"]) show(id, false);
    $("done-text").textContent = text;
    show("done", true);
    say("");
  }

  function route(s) {
    state = s;
    const who = s.recipient && s.recipient.name;
    if (who) $("signer").textContent = who;
    if (s.envelope && s.envelope.title) document.title = "Review and sign: " + s.envelope.title;
    if (who && !$("typed-name").value) $("typed-name").value = who;
    const status = recipientStatus(s);
    if (status === "signed") return finish("You have signed this document. Thank you.");
    if (status === "declined") return finish("You declined to sign this document.");
    if (!consented(s)) {
      $("disclosure-text").textContent = (s.consent && s.consent.disclosure) || "";
      $("disclosure-version").textContent = (s.consent && s.consent.disclosure_sha256) || "";
      show("disclosure", true);
      show("document", false);
      show("adopt", false);
      return;
    }
    show("disclosure", false);
    renderDocument(s);
    show("document", true);
    const signs = s.recipient && s.recipient.role === "signer";
    show("adopt", Boolean(signs));
    $("sign").disabled = !s.your_turn;
    if (signs && !s.your_turn) say("Earlier signers have not signed yet: you can read the document now and sign when it is your turn.");
    updatePreview();
  }

  async function load() {
    try {
      say("");
      route(await call("GET", "/state"));
    } catch (error) {
      say("This signing link cannot be used: " + error.message, true);
      for (const id of ["disclosure", "document", "adopt"]) show(id, false);
    }
  }

  // The access check: the signer reads a code from an image rendered the way the document's pages will be.
  async function consent() {
    const code = $("access-code").value.trim();
    if (!$("consent-box").checked) return say("Tick the box to give your consent.", true);
    try {
      await call("POST", "/access-check", { code: code });
    } catch (error) {
      return say("The code does not match the image: " + error.message, true);
    }
    try {
      await call("POST", "/consent", {});
      await load();
    } catch (error) {
      say(error.message, true);
    }
  }

  // A drawn signature: pointer strokes on a canvas, sent as the canvas's PNG (a data URL).
  const pad = { drawing: false, strokes: 0 };
  function setupCanvas() {
    const canvas = $("pad");
    const ctx = canvas.getContext("2d");
    ctx.lineWidth = 2.5;
    ctx.lineCap = "round";
    ctx.strokeStyle = "#000";
    const at = (event) => {
      const box = canvas.getBoundingClientRect();
      return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
    };
    canvas.addEventListener("pointerdown", (event) => {
      pad.drawing = true;
      canvas.setPointerCapture(event.pointerId);
      pad.strokes += 1;
      const [x, y] = at(event);
      ctx.beginPath();
      ctx.moveTo(x, y);
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!pad.drawing) return;
      const [x, y] = at(event);
      ctx.lineTo(x, y);
      ctx.stroke();
    });
    const stop = () => { pad.drawing = false; };
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    $("clear-pad").addEventListener("click", () => {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      pad.strokes = 0;
    });
  }

  function mode() {
    return $("mode-drawn").checked ? "drawn" : "typed";
  }

  function updatePreview() {
    $("typed-preview").textContent = $("typed-name").value;
    show("draw-area", mode() === "drawn");
  }

  async function sign() {
    const name = $("typed-name").value.trim();
    if (!name) return say("Type your full name to adopt it as your signature.", true);
    if (!$("intent-box").checked) return say("Tick the box to confirm that you intend to sign.", true);
    const signature = { type: "typed", name: name };
    if (mode() === "drawn") {
      if (pad.strokes === 0) return say("Draw your signature in the box, or choose the typed one.", true);
      signature.type = "drawn";
      signature.image = $("pad").toDataURL("image/png");
    }
    $("sign").disabled = true;
    try {
      await call("POST", "/sign", { signature: signature });
      finish("You have signed this document. Thank you.");
    } catch (error) {
      say(error.message, true);
      $("sign").disabled = false;
    }
  }

  async function decline() {
    const reason = $("decline-reason").value.trim();
    if (!reason) return say("Give a reason for declining.", true);
    try {
      await call("POST", "/decline", { reason: reason });
      finish("You declined to sign this document.");
    } catch (error) {
      say(error.message, true);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("access-image").src = base + "/access-check.png";
    $("consent").addEventListener("click", consent);
    $("sign").addEventListener("click", sign);
    $("decline").addEventListener("click", decline);
    $("typed-name").addEventListener("input", updatePreview);
    $("mode-typed").addEventListener("change", updatePreview);
    $("mode-drawn").addEventListener("change", updatePreview);
    setupCanvas();
    load();
  });
})();
