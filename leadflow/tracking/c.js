/* leadflow's tracking script, first-party: served by your leadflow at /c.js, no third-party code,
   no build step. Include it with <script src="{LEADFLOW_PUBLIC_URL}/c.js" async></script>.
   It keeps a visitor id in a cookie of your own site (lf_vid), sends each page view (path, title,
   referrer, UTM parameters, time) to /v1/collect, adds the visitor id to every form on the page
   that posts to leadflow, and offers leadflow.identify(email). With Global Privacy Control on,
   the id lives only in this tab and leadflow keeps nothing until the person signs up. */
(function () {
  "use strict";
  if (window.leadflow) { return; }
  var script = document.currentScript;
  if (!script || !script.src) { return; }
  var base = script.src.replace(/\/c\.js(?:[?#].*)?$/, "");
  var gpc = navigator.globalPrivacyControl === true;
  var NAME = "lf_vid", started = Date.now();

  function newId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return btoa(String.fromCharCode.apply(null, bytes))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function stored() {
    try {
      if (gpc) { return sessionStorage.getItem(NAME); }
    } catch (e) { return null; }
    var found = document.cookie.match(/(?:^|;\s*)lf_vid=([A-Za-z0-9_-]{16,64})/);
    return found && found[1];
  }

  function keep(id) {
    if (gpc) {
      try { sessionStorage.setItem(NAME, id); } catch (e) { /* private mode: this page only */ }
      return;
    }
    document.cookie = NAME + "=" + id + "; Max-Age=31536000; Path=/; SameSite=Lax" +
      (location.protocol === "https:" ? "; Secure" : "");
  }

  var visitor = stored();
  if (!visitor) { visitor = newId(); keep(visitor); }

  function send(body) {
    body.visitor = visitor;
    if (gpc) { body.gpc = true; }
    try {
      // text/plain: a simple request, no preflight; leadflow reads the JSON all the same
      fetch(base + "/v1/collect", {method: "POST", body: JSON.stringify(body), keepalive: true,
        mode: "cors", credentials: "omit", headers: {"Content-Type": "text/plain"}});
    } catch (e) { /* tracking never breaks the page */ }
  }

  function view() {
    send({type: "page_view", url: location.href, title: document.title,
      referrer: document.referrer, at: Date.now()});
  }

  function hidden(form, name, value) {
    var input = form.querySelector('input[name="' + name + '"]');
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      form.appendChild(input);
    }
    input.value = value;
  }

  function mark(form) {
    if (typeof form.action === "string" && form.action.indexOf(base + "/f/") === 0) {
      hidden(form, "lf_visitor", visitor);
      hidden(form, "lf_page", location.href);
      hidden(form, "lf_started", String(started));
    }
  }

  function markAll() {
    var forms = document.querySelectorAll("form");
    for (var i = 0; i < forms.length; i++) { mark(forms[i]); }
  }

  // a form added after the page loaded is marked as it is sent
  document.addEventListener("submit", function (event) { mark(event.target); }, true);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", markAll);
  } else {
    markAll();
  }

  var query = new URLSearchParams(location.search), click = query.get("lf_click");
  if (click) {
    send({type: "identify", click: click});
    // the token names the lead: off the address bar, so no form, bookmark or share carries it
    query.delete("lf_click");
    var rest = query.toString();
    try {
      history.replaceState(history.state, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
    } catch (e) { /* an old browser keeps it; the form's page then carries it */ }
  }

  window.leadflow = {
    visitor: visitor,
    page: view,  // for pages that change without loading (call it after each route change)
    identify: function (email) { send({type: "identify", email: String(email)}); }
  };
  view();
}());
