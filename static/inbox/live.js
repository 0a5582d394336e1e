/* Live updates for the agent pages.
 *
 * The page's <body> (or any element) carries data-live="sse" or "poll", data-live-url (the SSE
 * endpoint) and data-live-last (the stream position the page was rendered at). This script
 * turns the server's events into DOM events the page reacts to:
 *
 *   switchboard:event   detail = {type, session, channel, message, id}  (one per change)
 *   switchboard:resync  after a dropped connection came back: refresh what is shown
 *   switchboard:poll    every few seconds while live updates are unavailable or reconnecting
 *
 * An element with [data-live-status] shows "Live", "Reconnecting…" or "Updating every few
 * seconds" (no Redis: the page polls for good).
 *
 * The stream recovers by itself from anything: a live.error from the server, a connection the
 * browser gave up on (CLOSED), a server or Redis restart, a connection that went silent (the
 * server pings every few seconds; nothing for PING_GRACE_MS means it is gone). Each time it
 * reconnects with backoff from the last event id it saw, so nothing is missed, and polls to
 * keep the page current meanwhile; when the stream is back it says "Live" again.
 */
(function () {
  "use strict";
  var root = document.querySelector("[data-live]");
  if (!root) return;
  var statusEl = document.querySelector("[data-live-status]");
  var TYPES = ["session.created", "session.updated", "message.created", "message.updated"];
  var POLL_MS = 3000;
  var BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
  var PING_GRACE_MS = 20000;  // the server pings every 5 s when quiet

  function setStatus(state, text) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }
  function fire(name, detail) {
    document.dispatchEvent(new CustomEvent(name, { detail: detail || {} }));
  }

  var pollTimer = null;
  function startPolling() {
    if (pollTimer === null) pollTimer = window.setInterval(function () { fire("switchboard:poll"); }, POLL_MS);
  }
  function stopPolling() {
    if (pollTimer !== null) { window.clearInterval(pollTimer); pollTimer = null; }
  }

  if (root.dataset.live !== "sse" || !window.EventSource) {
    setStatus("poll", "Updating every few seconds");
    startPolling();
    return;
  }

  var baseUrl = root.dataset.liveUrl;
  var lastId = root.dataset.liveLast || "";
  var source = null;
  var attempt = 0;        // reconnections since the stream was last open
  var dropped = false;    // the page may have missed something: resync when live again
  var retryTimer = null;
  var watchdog = null;
  var leaving = false;

  function streamUrl() {
    if (!lastId) return baseUrl;
    return baseUrl + (baseUrl.indexOf("?") === -1 ? "?" : "&") + "last=" + encodeURIComponent(lastId);
  }
  function heard() {
    window.clearTimeout(watchdog);
    watchdog = window.setTimeout(function () { reconnect(); }, PING_GRACE_MS);
  }
  function reconnect() {
    // Take over from the browser's own retry: close, keep the page current, try again later.
    if (leaving) return;
    window.clearTimeout(watchdog);
    if (source) { source.close(); source = null; }
    dropped = true;
    setStatus("reconnecting", "Reconnecting…");
    startPolling();
    if (retryTimer !== null) return;
    var base = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    attempt += 1;
    retryTimer = window.setTimeout(function () { retryTimer = null; connect(); }, base / 2 + Math.random() * base / 2);
  }
  function connect() {
    var es = new EventSource(streamUrl(), { withCredentials: true });
    source = es;
    heard();
    es.onopen = function () {
      if (es !== source) return;
      attempt = 0;
      heard();
      stopPolling();
      setStatus("live", "Live");
      if (dropped) { dropped = false; fire("switchboard:resync"); }
    };
    es.onerror = function () {
      if (es !== source) return;
      dropped = true;
      setStatus("reconnecting", "Reconnecting…");
      startPolling();
      // CONNECTING: the browser retries by itself (with Last-Event-ID); CLOSED: it gave up
      // (an answer other than 200, say), so retry here. Either way the watchdog stands by.
      if (es.readyState === EventSource.CLOSED) reconnect();
    };
    TYPES.forEach(function (type) {
      es.addEventListener(type, function (e) {
        heard();
        if (e.lastEventId) lastId = e.lastEventId;
        var detail = {};
        try { detail = JSON.parse(e.data); } catch (err) { return; }
        detail.id = e.lastEventId;
        fire("switchboard:event", detail);
      });
    });
    es.addEventListener("live.ping", heard);
    // The server could not read events (Redis down for a while): reconnect with backoff.
    es.addEventListener("live.error", function () { if (es === source) reconnect(); });
    // The server ended the stream because the user signed out (or lost access): reload, which
    // shows the sign-in page or the inbox as the user may now see it.
    es.addEventListener("live.ended", function () {
      leaving = true;
      es.close();
      window.location.reload();
    });
  }

  window.addEventListener("beforeunload", function () {
    leaving = true;
    window.clearTimeout(watchdog);
    if (source) source.close();
  });
  connect();
})();
