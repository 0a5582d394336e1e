/* The inbox page's behaviour, on top of server-rendered HTML that works without it.
 *
 * - times in the agent's time zone ("2 min ago", "14:05") and window countdowns, kept current
 * - the list: filters apply as you change them, live refresh that keeps filters, page, scroll
 *   and selection; opening a row swaps the conversation in (htmx, hx-boost)
 * - the thread: new items inserted in order, changed messages (delivery ticks) replaced, the
 *   header and contact panel refreshed unless the agent is using them
 * - the composer: modes, Ctrl+Enter, drafts kept per session, "/" canned replies, file name,
 *   the template preview as you type
 * - keyboard shortcuts (see the help dialog), the contact panel on narrow screens, the image
 *   viewer
 *
 * Live updates come from live.js as DOM events: switchboard:event, switchboard:resync and
 * switchboard:poll. After any of our own actions the server sends "sb:changed" (HX-Trigger).
 */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  var inbox = document.querySelector(".sb-inbox");
  if (!inbox) return;

  var $ = function (selector, root) { return (root || document).querySelector(selector); };
  var $$ = function (selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); };

  function conversation() { return $("#conversation"); }
  function sessionId() {
    var el = conversation();
    return el && el.dataset.sessionId ? el.dataset.sessionId : "";
  }

  // --- Times and countdowns --------------------------------------------------------------

  var clockFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  var dayFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
  var fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

  function relative(date) {
    var seconds = Math.max(0, (Date.now() - date.getTime()) / 1000);
    if (seconds < 60) return "just now";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    if (seconds < 7 * 86400) return Math.floor(seconds / 86400) + " d ago";
    return dayFormat.format(date);
  }

  function clock(date) {
    var today = new Date();
    var sameDay = date.toDateString() === today.toDateString();
    return sameDay ? clockFormat.format(date) : dayFormat.format(date) + ", " + clockFormat.format(date);
  }

  function duration(ms) {
    var minutes = Math.floor(ms / 60000);
    if (minutes < 1) return "under a minute";
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours && minutes) return hours + " h " + minutes + " min";
    return hours ? hours + " h" : minutes + " min";
  }

  // "in 8 s", "in 2 min": when a send being retried tries again.
  function countdown(date) {
    var seconds = Math.round((date.getTime() - Date.now()) / 1000);
    if (seconds <= 0) return "any moment now";
    if (seconds < 60) return "in " + seconds + " s";
    return "in " + duration(seconds * 1000);
  }

  function renderCountdowns() {
    $$('time[data-format="countdown"]').forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (!isNaN(date)) el.textContent = countdown(date);
    });
  }

  function renderTimes(root) {
    $$("time[datetime]", root).forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date)) return;
      el.title = fullFormat.format(date);
      if (el.dataset.format === "relative") el.textContent = relative(date);
      else if (el.dataset.format === "clock") el.textContent = clock(date);
      else if (el.dataset.format === "countdown") el.textContent = countdown(date);
    });
    $$("[data-closes-at]", root).forEach(function (el) {
      var left = new Date(el.dataset.closesAt).getTime() - Date.now();
      var state = left <= 0 ? "closed" : left < 2 * 3600 * 1000 ? "soon" : "open";
      el.dataset.windowState = state;
      el.classList.remove("sb-window-open", "sb-window-soon", "sb-window-closed");
      el.classList.add("sb-window-" + state);
      if (state === "closed") el.textContent = "Template only";
      else if (el.dataset.format === "long") el.textContent = "Window closes in " + duration(left);
      else el.textContent = duration(left) + " left";
    });
  }

  // --- Small helpers -------------------------------------------------------------------------

  function get(url) {
    return fetch(url, { headers: { "HX-Request": "true" }, credentials: "same-origin" }).then(function (response) {
      if (response.status === 401 || response.redirected && /\/login\//.test(response.url)) {
        window.location.reload();  // signed out meanwhile: show the sign-in page
        throw new Error("signed out");
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    });
  }

  function fragment(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    return template.content;
  }

  function process(el) {
    if (window.htmx) window.htmx.process(el);
    renderTimes(el);
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(fn, ms);
    };
  }

  function announce(text) {
    var el = $("#sb-announcer");
    if (el) { el.textContent = ""; window.setTimeout(function () { el.textContent = text; }, 50); }
  }

  // A part of the page being used (a field with focus, an open menu) is not replaced under the
  // agent's hands; it is refreshed as soon as they leave it.
  function isBusy(el) {
    var active = document.activeElement;
    var editing = el.contains(active) && active.matches("input:not([type=checkbox]):not([type=radio]), textarea, select");
    return editing || !!el.querySelector("details[open]");
  }

  // --- The list ------------------------------------------------------------------------------

  var filters = $("#list-filters");
  var region = $("#list-region");

  function listQuery() {
    var rows = $(".sb-rows", region);
    return rows ? rows.dataset.listQuery || "" : "";
  }

  function formQuery() {
    var params = new URLSearchParams();
    new FormData(filters).forEach(function (value, key) {
      var defaults = { view: "all", status: "active", sort: "activity" };
      if (value !== "" && defaults[key] !== value) params.set(key, value);
    });
    return params.toString();
  }

  function pagePath() {
    var id = sessionId();
    return id ? "/s/" + id + "/" : inbox.dataset.indexUrl;
  }

  var listInFlight = false;
  var listAgain = false;

  function refreshList(query, push) {
    if (query === undefined) query = listQuery();
    if (listInFlight && !push) { listAgain = true; return; }
    listInFlight = true;
    var params = new URLSearchParams(query);
    if (sessionId()) params.set("current", sessionId());
    var scroller = $("#list-pane");
    var scrollTop = scroller ? scroller.scrollTop : 0;
    var focusedRow = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest(".sb-row") : null;
    var focusedId = focusedRow ? focusedRow.dataset.sessionId : "";
    get(inbox.dataset.listUrl + "?" + params.toString()).then(function (html) {
      region.innerHTML = html;
      process(region);
      if (scroller) scroller.scrollTop = scrollTop;
      if (focusedId) {
        var link = $('.sb-row[data-session-id="' + focusedId + '"] a', region);
        if (link) link.focus({ preventScroll: true });
      }
      if (push) history.pushState({ sb: true }, "", pagePath() + (query ? "?" + query : ""));
    }).catch(function () {}).then(function () {
      listInFlight = false;
      if (listAgain) { listAgain = false; refreshList(); }
    });
  }

  var refreshListSoon = debounce(function () { refreshList(); }, 150);

  if (filters) {
    var applyFilters = function () {
      refreshList(formQuery(), true);
    };
    filters.addEventListener("change", function (event) {
      if (event.target.name !== "q") applyFilters();
    });
    var search = $("#search");
    if (search) search.addEventListener("input", debounce(applyFilters, 300));
    filters.addEventListener("submit", function (event) { event.preventDefault(); applyFilters(); });
  }

  // View tabs and pagination are plain links; with scripts they refresh the list in place.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("[data-list-link]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    var query = link.getAttribute("href").split("?")[1] || "";
    var view = new URLSearchParams(query).get("view") || "all";
    if (filters && filters.elements.view) filters.elements.view.value = view;
    refreshList(query, true);
  });

  // Our own history entries (filters) reload the page on back/forward; htmx handles its own.
  window.addEventListener("popstate", function (event) {
    if (!event.state || !event.state.htmx) window.location.reload();
  });

  function markCurrentRow() {
    var id = sessionId();
    document.body.classList.toggle("has-session", !!id);
    $$(".sb-row", region).forEach(function (row) {
      var current = row.dataset.sessionId === id;
      row.classList.toggle("is-current", current);
      var link = $("a", row);
      if (current) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
      if (current) row.classList.remove("is-unread");
    });
  }

  // --- The thread ----------------------------------------------------------------------------

  function thread() { return $("#thread"); }

  function itemKey(el) {
    return [Number(el.dataset.t || 0), Number(el.dataset.o || 0), Number(el.dataset.i || 0)];
  }

  function before(a, b) {
    for (var i = 0; i < 3; i++) { if (a[i] !== b[i]) return a[i] < b[i]; }
    return false;
  }

  function insertItem(list, item) {
    var existing = document.getElementById(item.id);
    if (existing) { existing.replaceWith(item); return false; }
    var key = itemKey(item);
    var items = $$(":scope > .sb-item[data-t]", list);
    var next = null;
    for (var i = items.length - 1; i >= 0; i--) {
      if (before(itemKey(items[i]), key)) break;
      next = items[i];
    }
    var empty = $('[data-testid="thread-empty"]', list);
    if (empty) empty.remove();
    list.insertBefore(item, next);
    return true;
  }

  // The open session's items: those below the last separator (earlier sessions sit above it).
  function sessionItems(selector) {
    var items = $$(selector);
    var separators = $$("#thread > .sb-separator");
    if (!separators.length) return items;
    var last = separators[separators.length - 1];
    return items.filter(function (el) { return last.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING; });
  }

  function maxId(kind) {
    var ids = sessionItems('#thread > [data-kind="' + kind + '"]').map(function (el) { return Number(el.dataset.i || 0); });
    return ids.length ? Math.max.apply(null, ids) : 0;
  }

  // Messages whose look may still change: replies whose delivery may move, and files still
  // on their way from the platform (or failed, until an agent's Retry brings them).
  function moving(el) {
    if (el.dataset.media === "pending" || el.dataset.media === "failed") return true;
    return el.dataset.direction === "out" && el.dataset.status !== "read" && el.dataset.status !== "deleted";
  }

  function movingStatuses() {
    return sessionItems('#thread > [data-kind="message"]')
      .filter(moving)
      .slice(-200)
      .map(function (el) { return el.dataset.i + "." + (el.dataset.shown || el.dataset.status); })
      .join(",");
  }

  var pendingParts = {};

  function replacePart(id, node) {
    var current = document.getElementById(id);
    if (!current || !node) return;
    if (isBusy(current)) { pendingParts[id] = node; return; }
    delete pendingParts[id];
    var active = document.activeElement;
    var focusId = current.contains(active) && active.dataset ? active.dataset.testid : null;
    current.replaceWith(node);
    process(node);
    // Keep the keyboard where it was (the same control in the new version, if it is there).
    if (focusId) {
      var same = node.querySelector('[data-testid="' + focusId + '"]');
      if (same) same.focus({ preventScroll: true });
    }
  }

  function applyPendingParts() {
    Object.keys(pendingParts).forEach(function (id) { replacePart(id, pendingParts[id]); });
  }
  document.addEventListener("focusout", function () { window.setTimeout(applyPendingParts, 0); });
  document.addEventListener("toggle", function () { window.setTimeout(applyPendingParts, 0); }, true);

  var threadInFlight = false;
  var threadAgain = false;

  function updateThread() {
    var conv = conversation();
    if (!conv || !conv.dataset.updatesUrl || !thread()) return;
    if (threadInFlight) { threadAgain = true; return; }
    threadInFlight = true;
    var composer = $("#composer");
    var params = new URLSearchParams({
      m: maxId("message"), n: maxId("note"), t: maxId("event"), st: movingStatuses(),
      w: composer ? composer.dataset.state || composer.dataset.windowState : "",
      seen: document.visibilityState === "visible" ? "1" : "0"
    });
    var url = conv.dataset.updatesUrl + (conv.dataset.updatesUrl.indexOf("?") === -1 ? "?" : "&") + params;
    var forSession = sessionId();
    get(url).then(function (html) {
      if (sessionId() !== forSession) return;  // another conversation was opened meanwhile
      var parts = fragment(html);
      var list = thread();
      var part = function (name) {
        var t = parts.querySelector('template[data-part="' + name + '"]');
        return t ? t.content : null;
      };
      var added = part("items");
      var newest = null;
      if (added) {
        Array.prototype.slice.call(added.children).forEach(function (item) {
          if (insertItem(list, item)) {
            process(item);
            if (item.dataset.direction === "in") newest = item;
          }
        });
      }
      var changed = part("changed");
      if (changed) Array.prototype.slice.call(changed.children).forEach(function (item) { insertItem(list, item); process(item); });
      var header = part("header");
      if (header) replacePart("conversation-header", header.firstElementChild);
      var panel = part("panel");
      if (panel) replacePart("contact-panel", panel.firstElementChild);
      var newComposer = part("composer");
      if (newComposer && composer && !composerDirty()) {
        composer.replaceWith(newComposer.firstElementChild);
        initComposer();
      }
      if (newest) {
        var text = $(".sb-text", newest);
        announce("New message from " + ($("#conversation-title") || {}).textContent + ": " + (text ? text.textContent.slice(0, 140) : newest.dataset.type));
      }
    }).catch(function () {}).then(function () {
      threadInFlight = false;
      if (threadAgain) { threadAgain = false; updateThread(); }
    });
  }

  var updateThreadSoon = debounce(updateThread, 60);

  // Scrolling up loads older messages (htmx, intersect); keep the view where it was.
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target && event.detail.target.classList && event.detail.target.classList.contains("sb-older")) {
      var scroller = $("#thread-scroll");
      if (scroller) scroller.dataset.fromBottom = String(scroller.scrollHeight - scroller.scrollTop);
    }
  });

  // --- Live updates ----------------------------------------------------------------------------

  document.addEventListener("switchboard:event", function (event) {
    var detail = event.detail || {};
    refreshListSoon();
    if (String(detail.session) === sessionId()) updateThreadSoon();
  });
  document.addEventListener("switchboard:resync", function () { refreshList(); updateThread(); });
  // A toast goes away when clicked (errors stay until then).
  document.addEventListener("click", function (event) {
    var toast = event.target.closest && event.target.closest(".sb-flash-msg");
    if (toast) toast.remove();
  });
  document.body.addEventListener("sb:changed", function () { refreshList(); updateThread(); });

  var stamps = { list: null, thread: null, session: null };
  document.addEventListener("switchboard:poll", function () {
    if (document.visibilityState !== "visible") return;
    var id = sessionId();
    get(inbox.dataset.changesUrl + (id ? "?session=" + id : "")).then(function (text) {
      var now = JSON.parse(text);
      // The first answer (for this page or this conversation) cannot tell what changed since
      // the HTML was rendered, so it refreshes once; after that, only on a change.
      if (now.list !== stamps.list) refreshList();
      if (id && (stamps.session !== id || now.thread !== stamps.thread)) updateThread();
      stamps = { list: now.list, thread: now.thread || null, session: id };
    }).catch(function () {});
  });

  // --- The composer ----------------------------------------------------------------------------

  function composerText() { return $("#composer-text"); }

  function composerDirty() {
    var text = composerText();
    var file = $('#composer input[type="file"]');
    return (text && text.value.trim() !== "") || (file && file.files && file.files.length > 0) ||
      ($("#composer") && $("#composer").contains(document.activeElement));
  }

  function setMode(mode) {
    var composer = $("#composer");
    if (!composer) return;
    var radio = $('input[name="mode"][value="' + mode + '"]', composer);
    if (!radio || radio.disabled) return false;
    radio.checked = true;
    composer.dataset.mode = mode;
    composer.className = composer.className.replace(/\bsb-mode-\w+/, "sb-mode-" + mode);
    var text = composerText();
    if (text) {
      if (!text.dataset.placeholderReply) text.dataset.placeholderReply = text.placeholder;
      text.placeholder = mode === "note" ? text.dataset.placeholderNote : text.dataset.placeholderReply;
    }
    return true;
  }

  function renderPreview() {
    var fields = $(".sb-template-fields");
    if (!fields) return;
    var preview = $('[data-testid="template-preview"]', fields);
    var values = {};
    $$("[data-placeholder]", fields).forEach(function (input) {
      values[input.dataset.placeholder] = { value: input.value.trim(), label: input.dataset.label };
    });
    // Text only (textContent): what the customer sees, never markup.
    preview.textContent = (fields.dataset.templateText || "").replace(/\{\{\s*([A-Za-z0-9_.]+)\s*\}\}/g, function (match, name) {
      var field = values[name];
      if (!field) return "";
      return field.value || "[" + field.label + "]";
    });
  }

  function initComposer() {
    var composer = $("#composer");
    if (!composer) return;
    process(composer);
    var text = composerText();
    var key = text ? text.dataset.draftKey : null;
    if (composer.dataset.sent && key) sessionStorage.removeItem(key);
    if (text && key && !text.value) text.value = sessionStorage.getItem(key) || "";
    var checked = $('input[name="mode"]:checked', composer);
    if (checked) setMode(checked.value);
    renderPreview();
    canned.load();
  }

  document.addEventListener("input", function (event) {
    var target = event.target;
    if (target.id === "composer-text" && target.dataset.draftKey) {
      if (target.value) sessionStorage.setItem(target.dataset.draftKey, target.value);
      else sessionStorage.removeItem(target.dataset.draftKey);
    }
    if (target.dataset && target.dataset.placeholder !== undefined) renderPreview();
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.name === "mode" && target.closest("#composer")) {
      setMode(target.value);
      var focus = target.value === "template" ? $("#template-select") : composerText();
      if (focus) focus.focus();
    }
    if (target.type === "file" && target.closest("#composer")) {
      var label = $(".sb-attach-label", target.closest("label"));
      var file = target.files && target.files[0];
      if (label) label.textContent = file ? file.name : "Attach";
      target.closest("label").classList.toggle("has-file", !!file);
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.closest && event.target.closest("#composer")) {
      var form = event.target.closest("form");
      if (form) { event.preventDefault(); form.requestSubmit(); }
    }
  });

  // "/" canned replies: a small listbox under the textarea, filtered by what follows the "/".
  var canned = {
    items: [],
    open: false,
    start: -1,
    active: 0,
    load: function () {
      var data = $("#canned-data");
      try { this.items = data ? JSON.parse(data.textContent) : []; } catch (e) { this.items = []; }
      this.close();
    },
    list: function () { return $("#canned-list"); },
    show: function (query) {
      var list = this.list();
      if (!list) return;
      query = (query || "").toLowerCase();
      var matches = this.items.filter(function (item) {
        return item.shortcut.toLowerCase().indexOf(query) !== -1 || item.title.toLowerCase().indexOf(query) !== -1;
      }).slice(0, 8);
      list.innerHTML = "";
      if (!matches.length) {
        var none = document.createElement("li");
        none.className = "sb-canned-none";
        none.textContent = this.items.length ? "No canned reply matches “" + query + "”" : "No canned replies yet (admins add them in Admin → Canned replies)";
        list.appendChild(none);
      }
      matches.forEach(function (item, index) {
        var li = document.createElement("li");
        li.id = "canned-" + index;
        li.setAttribute("role", "option");
        li.dataset.index = String(index);
        var head = document.createElement("strong");
        head.textContent = "/" + item.shortcut;
        var title = document.createElement("span");
        title.textContent = " " + item.title;
        var body = document.createElement("span");
        body.className = "sb-canned-body";
        body.textContent = item.body;
        li.appendChild(head); li.appendChild(title); li.appendChild(body);
        li.addEventListener("mousedown", function (e) { e.preventDefault(); canned.pick(item); });
        list.appendChild(li);
      });
      this.matches = matches;
      this.active = 0;
      this.open = true;
      list.hidden = false;
      this.highlight();
      var button = $("[data-canned-open]");
      if (button) button.setAttribute("aria-expanded", "true");
    },
    highlight: function () {
      var list = this.list();
      var text = composerText();
      $$("[role=option]", list).forEach(function (li, i) { li.setAttribute("aria-selected", String(i === canned.active)); });
      if (text) text.setAttribute("aria-activedescendant", this.matches && this.matches.length ? "canned-" + this.active : "");
    },
    close: function () {
      var list = this.list();
      if (list) list.hidden = true;
      this.open = false;
      this.start = -1;
      var text = composerText();
      if (text) text.removeAttribute("aria-activedescendant");
      var button = $("[data-canned-open]");
      if (button) button.setAttribute("aria-expanded", "false");
    },
    pick: function (item) {
      var text = composerText();
      if (!text) return;
      var start = this.start >= 0 ? this.start : text.selectionStart;
      var end = text.selectionStart;
      text.value = text.value.slice(0, start) + item.body + text.value.slice(end);
      var caret = start + item.body.length;
      text.focus();
      text.setSelectionRange(caret, caret);
      text.dispatchEvent(new Event("input", { bubbles: true }));
      this.close();
    }
  };

  document.addEventListener("input", function (event) {
    var text = event.target;
    if (text.id !== "composer-text") return;
    var composer = $("#composer");
    if (composer && composer.dataset.mode === "note") { canned.close(); return; }
    var upto = text.value.slice(0, text.selectionStart);
    var match = /(^|\s)\/([\w-]*)$/.exec(upto);
    if (match) {
      canned.start = text.selectionStart - match[2].length - 1;
      canned.show(match[2]);
    } else if (canned.open) {
      canned.close();
    }
  });

  document.addEventListener("keydown", function (event) {
    if (!canned.open || event.target.id !== "composer-text") return;
    var count = canned.matches ? canned.matches.length : 0;
    if (event.key === "ArrowDown" && count) { canned.active = (canned.active + 1) % count; canned.highlight(); event.preventDefault(); }
    else if (event.key === "ArrowUp" && count) { canned.active = (canned.active - 1 + count) % count; canned.highlight(); event.preventDefault(); }
    else if ((event.key === "Enter" || event.key === "Tab") && count && !event.ctrlKey && !event.metaKey) { canned.pick(canned.matches[canned.active]); event.preventDefault(); }
    else if (event.key === "Escape") { canned.close(); event.preventDefault(); event.stopPropagation(); }
  }, true);

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-canned-open]");
    if (button) {
      if (canned.open) { canned.close(); return; }
      var text = composerText();
      if (text) text.focus();
      canned.start = -1;
      canned.show("");
    } else if (canned.open && !(event.target.closest && event.target.closest("#canned-list"))) {
      canned.close();
    }
  });

  // --- The contact panel, menus, the image viewer --------------------------------------------------

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest && event.target.closest("[data-panel-toggle]");
    var close = event.target.closest && event.target.closest("[data-panel-close]");
    var conv = conversation();
    if (toggle && conv) {
      event.preventDefault();
      var open = !conv.classList.contains("panel-open");
      conv.classList.toggle("panel-open", open);
      toggle.setAttribute("aria-expanded", String(open));
      if (open) { var heading = $("#contact-heading"); if (heading) { heading.tabIndex = -1; heading.focus(); } }
    } else if (close && conv) {
      event.preventDefault();
      conv.classList.remove("panel-open");
      var button = $("[data-panel-toggle]");
      if (button) { button.setAttribute("aria-expanded", "false"); button.focus(); }
    }
    // One menu open at a time; a click elsewhere closes it.
    var inMenu = event.target.closest && event.target.closest("details.sb-menu, details.sb-more-filters");
    $$("details.sb-menu[open]").forEach(function (menu) { if (menu !== inMenu) menu.open = false; });

    var image = event.target.closest && event.target.closest("[data-viewer]");
    var viewer = $("#viewer");
    if (image && viewer && viewer.showModal && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      var img = $("img", image);
      $("img", viewer).src = image.href;
      $("img", viewer).alt = img ? img.alt : "";
      $("[data-viewer-open]", viewer).href = image.href;
      viewer.showModal();
    }
  });

  // Clicking the backdrop of a dialog closes it.
  $$("dialog").forEach(function (dialog) {
    dialog.addEventListener("click", function (event) { if (event.target === dialog) dialog.close(); });
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-help-open]")) openHelp();
  });

  function openHelp() {
    var help = $("#help");
    if (help && !help.open && help.showModal) help.showModal();
  }

  // --- Keyboard shortcuts --------------------------------------------------------------------

  function typing(target) {
    if (!target || !target.closest) return false;
    return !!target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']");
  }

  function moveSession(step) {
    var rows = $$(".sb-row a", region);
    if (!rows.length) return;
    var index = rows.findIndex(function (link) { return link.closest(".sb-row").classList.contains("is-current"); });
    var focused = rows.indexOf(document.activeElement);
    if (focused !== -1) index = focused;
    var next = rows[index === -1 ? 0 : Math.min(Math.max(index + step, 0), rows.length - 1)];
    if (next) { next.focus(); next.click(); }
  }

  function submitAction(name) {
    var button = $('[data-action="' + name + '"]');
    if (button && button.form) button.form.requestSubmit(button);
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      $$("details.sb-menu[open], details.sb-more-filters[open]").forEach(function (menu) { menu.open = false; });
      if (canned.open) canned.close();
      var conv = conversation();
      if (conv && conv.classList.contains("panel-open")) conv.classList.remove("panel-open");
      if (typing(event.target)) event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target) || event.defaultPrevented) return;
    if ($("dialog[open]")) return;
    var handled = true;
    switch (event.key) {
      case "j": moveSession(1); break;
      case "k": moveSession(-1); break;
      case "r":
        if (setMode("reply") !== false && composerText()) composerText().focus();
        else if ($("#template-select")) { setMode("template"); $("#template-select").focus(); }
        break;
      case "n": if (setMode("note") !== false && composerText()) composerText().focus(); break;
      case "e": submitAction("resolve"); break;
      case "a": submitAction("assign-me"); break;
      case "/": var search = $("#search"); if (search) { search.focus(); search.select(); } break;
      case "?": openHelp(); break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });

  // --- After htmx swaps ----------------------------------------------------------------------------

  // htmx:load fires for every piece of content htmx puts in the page.
  document.body.addEventListener("htmx:load", function (event) {
    var elt = event.detail.elt;
    if (!elt || elt.nodeType !== 1) return;
    renderTimes(elt);
    if (elt.id === "conversation") { markCurrentRow(); initComposer(); }
    if (elt.id === "composer") initComposer();
    if (elt.closest && elt.closest("#template-fields")) renderPreview();
    if (elt.classList && elt.classList.contains("sb-flash-success")) {
      window.setTimeout(function () { if (elt.isConnected) elt.remove(); }, 6000);
    }
  });

  document.body.addEventListener("htmx:afterSwap", function (event) {
    var scroller = $("#thread-scroll");
    if (scroller && scroller.dataset.fromBottom) {
      scroller.scrollTop = scroller.scrollHeight - Number(scroller.dataset.fromBottom);
      delete scroller.dataset.fromBottom;
    }
    if (event.detail.target && event.detail.target.id === "conversation") markCurrentRow();
  });

  // htmx swaps only after the new conversation arrived; show that it is loading meanwhile.
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.target && event.detail.target.id === "conversation") event.detail.target.classList.add("is-loading");
  });
  document.body.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.target && event.detail.target.isConnected) event.detail.target.classList.remove("is-loading");
    // A menu's form did its job: close the menu (the header then refreshes with the result).
    var menu = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("details.sb-menu");
    if (menu && event.detail.successful) { menu.open = false; }
  });

  // --- Start ------------------------------------------------------------------------------------

  renderTimes(document);
  markCurrentRow();
  initComposer();
  var flash = $("#flash .sb-flash-success");
  if (flash) window.setTimeout(function () { flash.remove(); }, 6000);
  window.setInterval(function () { renderTimes(document); }, 30000);
  window.setInterval(renderCountdowns, 1000);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { refreshList(); updateThread(); }
  });
})();
