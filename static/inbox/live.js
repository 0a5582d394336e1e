/* Live updates for the agent pages.
 *
 * The page's <body> (or any element) carries data-live="sse" or "poll", data-live-url (the SSE
 * endpoint) and data-live-last (the stream position the page was rendered at). This script
 * turns the server's events into DOM events the page reacts to:
 *
 *   switchboard:event   detail = {type, session, channel, message, id}  (one per change)
 *   switchboard:resync  after a dropped connection came back: refresh what is shown
 *   switchboard:poll    every few seconds when live updates are unavailable (no Redis)
 *
 * An element with [data-live-status] shows "Live", "Reconnecting…" or "Updating every few
 * seconds". EventSource reconnects by itself and sends Last-Event-ID, so no event is missed.
 */
(function () {
  "use strict";
  var root = document.querySelector("[data-live]");
  if (!root) return;
  var statusEl = document.querySelector("[data-live-status]");
  var TYPES = ["session.created", "session.updated", "message.created", "message.updated"];

  function setStatus(state, text) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }
  function fire(name, detail) {
    document.dispatchEvent(new CustomEvent(name, { detail: detail || {} }));
  }
  function poll() {
    setStatus("poll", "Updating every few seconds");
    window.setInterval(function () { fire("switchboard:poll"); }, 3000);
  }

  if (root.dataset.live !== "sse" || !window.EventSource) { poll(); return; }

  var url = root.dataset.liveUrl;
  if (root.dataset.liveLast) {
    url += (url.indexOf("?") === -1 ? "?" : "&") + "last=" + encodeURIComponent(root.dataset.liveLast);
  }
  var source = new EventSource(url, { withCredentials: true });
  var dropped = false;
  var failures = 0;
  source.onopen = function () {
    setStatus("live", "Live");
    failures = 0;
    if (dropped) { dropped = false; fire("switchboard:resync"); }
  };
  source.onerror = function () {
    dropped = true;
    failures += 1;
    setStatus("reconnecting", "Reconnecting…");
    if (source.readyState === EventSource.CLOSED || failures > 10) {
      source.close();
      poll();  // the server refused live updates: fall back, and keep the page current
    }
  };
  TYPES.forEach(function (type) {
    source.addEventListener(type, function (e) {
      var detail = {};
      try { detail = JSON.parse(e.data); } catch (err) { return; }
      detail.id = e.lastEventId;
      fire("switchboard:event", detail);
    });
  });
  source.addEventListener("live.error", function () { source.close(); dropped = true; poll(); });
  // The server ended the stream because the user signed out (or lost access): reload, which
  // shows the sign-in page or the inbox as the user may now see it.
  source.addEventListener("live.ended", function () { source.close(); window.location.reload(); });
  window.addEventListener("beforeunload", function () { source.close(); });
})();
