// rdeploy's console: follows GET /events and re-reads the live part of the page (the
// element with id "live") when a node it shows changes. No other request, no library.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  var region = document.getElementById("live");
  if (!region || !window.EventSource) {
    return;
  }
  // A node page follows its own node; the lists follow every node.
  var only = region.getAttribute("data-node");
  var pending = null;
  var busy = false;
  function show(text) {
    if (status) {
      status.textContent = text;
    }
  }
  function refresh() {
    pending = null;
    if (busy) {
      pending = setTimeout(refresh, 500);
      return;
    }
    busy = true;
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        var now = document.getElementById("live");
        if (fresh && now) {
          now.replaceWith(document.importNode(fresh, true));
        }
      })
      .catch(function () { show("refresh failed"); })
      .then(function () { busy = false; });
  }
  var es = new EventSource("/events");
  es.onopen = function () { show("● live"); };
  es.onerror = function () { show("○ reconnecting"); };
  function changed(e) {
    if (only && e.type === "node") {
      try {
        if (JSON.parse(e.data).id !== only) {
          return;
        }
      } catch (err) {
        return;
      }
    }
    if (!pending) {
      pending = setTimeout(refresh, 250);
    }
  }
  es.addEventListener("node", changed);
  es.addEventListener("lagged", changed);
  // A page left (or kept in the back-forward cache) gives its connection back: browsers
  // open few connections per server, and a stream held by a hidden page would starve them.
  window.addEventListener("pagehide", function () { es.close(); });
})();
