/*! NotifyHub inbox widget — plain JavaScript, no build step, no dependencies (docs/inbox.md "Widget").
 *
 * One script tag and a recipient token (minted by your backend: POST /api/v1/recipients/{id}/inbox-token):
 *
 *   <script src="https://notify.example.com/static/notifyhub/inbox.js"
 *           data-token="…" data-api="https://notify.example.com/api/v1"
 *           data-stream="https://stream.notify.example.com/api/v1/inbox/stream"
 *           data-refresh="getInboxToken"></script>
 *
 * or from code:
 *
 *   const inbox = NotifyHubInbox.mount(document.getElementById("bell"), {
 *     token, expiresAt, api, stream,
 *     refreshToken: async () => (await fetch("/my/inbox-token", {method: "POST"})).json(),
 *   });
 *
 * It shows a bell with the unread count and a panel listing the messages (mark read, mark all
 * read, archive, a link to the recipient's preference center), stays live over EventSource
 * and reconnects without losing or repeating messages: it remembers the highest message seq it
 * has shown, reconnects with `?last_event_id=<seq>` (the stream replays what was missed) and
 * drops any message it already has. `refreshToken` (optional) is called before the token
 * expires, when the stream ends with `token_expired` (a stream lasts as long as its token) and
 * after a 401; it returns `{token, expires_at}` (the token endpoint's answer) or a token string.
 */
(function (global) {
  "use strict";

  var STRINGS = {
    en: {
      notifications: "Notifications", unread: "{n} unread", markRead: "Mark as read",
      markUnread: "Mark as unread", markAllRead: "Mark all as read", archive: "Archive",
      empty: "You have no notifications.", preferences: "Notification preferences",
      newMessage: "New notification: {title}", markedRead: "Marked as read",
      allRead: "All notifications marked as read", archived: "Notification archived",
      loadMore: "Load more", close: "Close", offline: "Reconnecting…", error: "Could not load notifications.",
      unreadLabel: "Unread", newTab: "(opens in a new tab)"
    },
    fr: {
      notifications: "Notifications", unread: "{n} non lue(s)", markRead: "Marquer comme lue",
      markUnread: "Marquer comme non lue", markAllRead: "Tout marquer comme lu", archive: "Archiver",
      empty: "Vous n’avez aucune notification.", preferences: "Préférences de notification",
      newMessage: "Nouvelle notification : {title}", markedRead: "Marquée comme lue",
      allRead: "Toutes les notifications sont marquées comme lues", archived: "Notification archivée",
      loadMore: "Afficher plus", close: "Fermer", offline: "Reconnexion…", error: "Impossible de charger les notifications.",
      unreadLabel: "Non lue"
    }
  };

  var CSS = [
    ".nhi{position:relative;display:inline-block;font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:#101828}",
    ".nhi *{box-sizing:border-box}",
    ".nhi-bell{position:relative;display:inline-flex;align-items:center;justify-content:center;width:44px;height:44px;border-radius:50%;border:1px solid #d0d5dd;background:#fff;cursor:pointer;color:inherit}",
    ".nhi-bell svg{width:22px;height:22px}",
    ".nhi-badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 5px;border-radius:10px;background:#d92d20;color:#fff;font-size:12px;font-weight:700;line-height:20px;text-align:center}",
    ".nhi-badge[hidden]{display:none}",
    ".nhi-panel{position:absolute;right:0;top:52px;z-index:1000;width:min(380px,92vw);max-height:70vh;display:flex;flex-direction:column;background:#fff;border:1px solid #d0d5dd;border-radius:10px;box-shadow:0 12px 32px rgba(16,24,40,.18)}",
    ".nhi-panel[hidden]{display:none}",
    ".nhi-head{display:flex;align-items:center;justify-content:space-between;gap:8px;padding:10px 12px;border-bottom:1px solid #eaecf0}",
    ".nhi-head h2{font-size:16px;margin:0}",
    ".nhi-list{list-style:none;margin:0;padding:0;overflow:auto}",
    ".nhi-item{padding:10px 12px;border-bottom:1px solid #f2f4f7}",
    ".nhi-item.nhi-unread{background:#f5f8ff;border-left:3px solid #2453c4}",
    ".nhi-title{font-weight:600;margin:0}",
    ".nhi-title a{color:inherit}",
    ".nhi-body{margin:2px 0 4px;color:#344054;white-space:pre-line}",
    ".nhi-meta{display:flex;align-items:center;justify-content:space-between;gap:6px;color:#667085;font-size:12px}",
    ".nhi-actions{display:flex;gap:4px}",
    ".nhi-btn{font:inherit;font-size:12px;padding:3px 8px;border:1px solid #d0d5dd;border-radius:6px;background:#fff;color:#344054;cursor:pointer}",
    ".nhi-btn:disabled{opacity:.5;cursor:default}",
    ".nhi-empty{padding:16px 12px;margin:0;color:#667085}",
    ".nhi-foot{display:flex;justify-content:space-between;align-items:center;padding:8px 12px;border-top:1px solid #eaecf0}",
    ".nhi-foot a{color:#2453c4}",
    ".nhi-status{font-size:12px;color:#b54708}",
    ".nhi-sr{position:absolute!important;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}",
    ".nhi button:focus-visible,.nhi a:focus-visible,.nhi [tabindex]:focus-visible{outline:3px solid #f79009;outline-offset:2px}"
  ].join("\n");

  var BELL = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" ' +
    'stroke-linejoin="round" aria-hidden="true" focusable="false"><path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9"/>' +
    '<path d="M13.73 21a2 2 0 0 1-3.46 0"/></svg>';

  var instances = 0;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (attrs[k] !== null && attrs[k] !== undefined) { node.setAttribute(k, attrs[k]); }
      });
    }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function injectStyle() {
    if (document.getElementById("nhi-style")) { return; }
    var style = el("style", {id: "nhi-style"});
    style.textContent = CSS;
    (document.head || document.documentElement).appendChild(style);
  }

  function fmt(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, k) { return values[k] === undefined ? "" : values[k]; });
  }

  function safeUrl(url) {
    try {
      var parsed = new URL(url, global.location.href);
      return (parsed.protocol === "https:" || parsed.protocol === "http:") ? parsed.href : null;
    } catch (e) { return null; }
  }

  function Inbox(root, options) {
    if (!root) { throw new Error("NotifyHubInbox.mount: no element"); }
    if (!options || !options.token) { throw new Error("NotifyHubInbox.mount: a token is required"); }
    this.root = root;
    this.id = "nhi" + (++instances);
    this.token = options.token;
    this.expiresAt = options.expiresAt ? new Date(options.expiresAt) : null;
    this.api = (options.api || "/api/v1").replace(/\/+$/, "");
    this.streamUrl = options.stream || (this.api + "/inbox/stream");
    this.refreshToken = options.refreshToken || null;
    this.onEvent = options.onEvent || null;
    this.pageSize = options.pageSize || 20;
    this.strings = STRINGS[(options.locale || "en").slice(0, 2)] || STRINGS.en;
    this.messages = {};  // id -> message
    this.order = [];  // ids, newest (highest seq) first
    this.lastSeq = 0;  // the highest seq shown: the stream replays from here
    this.counts = {unread: 0, unseen: 0, total: 0};
    this.next = null;  // the list's next page
    this.loaded = false;  // the first page was read
    this.preferencesUrl = null;
    this.source = null;
    this.retryMs = 1000;
    this.reconnectTimer = null;
    this.refreshTimer = null;
    this.destroyed = false;
    this.open = false;
    injectStyle();
    this._build();
    this._start(options.locale);
  }

  Inbox.prototype.t = function (key, values) {
    return fmt(this.strings[key] || STRINGS.en[key] || key, values || {});
  };

  Inbox.prototype._build = function () {
    var self = this, id = this.id;
    this.wrap = el("div", {"class": "nhi"});
    this.bell = el("button", {type: "button", "class": "nhi-bell", "aria-expanded": "false",
      "aria-controls": id + "-panel", "aria-haspopup": "dialog"});
    this.bell.innerHTML = BELL;
    this.bellLabel = el("span", {"class": "nhi-sr"});
    this.badge = el("span", {"class": "nhi-badge", "aria-hidden": "true", hidden: ""});
    this.bell.appendChild(this.bellLabel);
    this.bell.appendChild(this.badge);
    this.live = el("div", {"class": "nhi-sr", "aria-live": "polite", "aria-atomic": "true", role: "status"});

    this.panel = el("div", {id: id + "-panel", "class": "nhi-panel", role: "dialog", "aria-modal": "false",
      "aria-labelledby": id + "-title", hidden: ""});
    var head = el("div", {"class": "nhi-head"});
    this.heading = el("h2", {id: id + "-title", tabindex: "-1"});
    this.readAll = el("button", {type: "button", "class": "nhi-btn nhi-readall"});
    head.appendChild(this.heading);
    head.appendChild(this.readAll);
    this.list = el("ul", {"class": "nhi-list", "aria-labelledby": id + "-title"});
    this.empty = el("p", {"class": "nhi-empty"});
    var foot = el("div", {"class": "nhi-foot"});
    this.prefs = el("a", {"class": "nhi-prefs", hidden: "", target: "_blank", rel: "noopener noreferrer"});
    this.more = el("button", {type: "button", "class": "nhi-btn nhi-more", hidden: ""});
    this.status = el("span", {"class": "nhi-status", "aria-hidden": "true"});
    foot.appendChild(this.prefs);
    foot.appendChild(this.status);
    foot.appendChild(this.more);
    this.panel.appendChild(head);
    this.panel.appendChild(this.list);
    this.panel.appendChild(this.empty);
    this.panel.appendChild(foot);
    this.wrap.appendChild(this.bell);
    this.wrap.appendChild(this.live);
    this.wrap.appendChild(this.panel);
    this.root.appendChild(this.wrap);
    this._texts();

    this.bell.addEventListener("click", function () { self.toggle(); });
    this.readAll.addEventListener("click", function () { self.markAllRead(); });
    this.more.addEventListener("click", function () { self._loadPage(); });
    this.list.addEventListener("click", function (e) { self._onListClick(e); });
    this.wrap.addEventListener("keydown", function (e) {
      if ((e.key === "Escape" || e.key === "Esc") && self.open) {
        e.preventDefault();
        self.close(true);
      }
    });
    this._outside = function (e) {
      if (self.open && !self.wrap.contains(e.target)) { self.close(false); }
    };
    document.addEventListener("mousedown", this._outside);
  };

  Inbox.prototype._texts = function () {
    this.heading.textContent = this.t("notifications");
    this.readAll.textContent = this.t("markAllRead");
    this.empty.textContent = this.t("empty");
    this.prefs.textContent = this.t("preferences");
    this.prefs.appendChild(el("span", {"class": "nhi-sr"}, " " + this.t("newTab")));
    this.more.textContent = this.t("loadMore");
    this._renderCounts();
  };

  // -- HTTP ------------------------------------------------------------------------------------

  Inbox.prototype._fetch = function (path, init, retried) {
    var self = this;
    init = init || {};
    var headers = {"Authorization": "Bearer " + this.token, "Accept": "application/json"};
    if (init.method === "POST") { headers["Content-Type"] = "application/json"; }
    var url = /^https?:/.test(path) ? path : this.api + path;
    return fetch(url, {method: init.method || "GET", headers: headers, body: init.body, credentials: "omit",
      mode: "cors"}).then(function (response) {
      if (response.status === 401 && !retried && self.refreshToken) {
        return self._refresh().then(function () { return self._fetch(path, init, true); });
      }
      if (!response.ok) {
        var error = new Error("NotifyHub inbox: HTTP " + response.status);
        error.status = response.status;
        throw error;
      }
      return response.status === 204 ? null : response.json();
    });
  };

  Inbox.prototype._refresh = function () {
    var self = this;
    if (!this.refreshToken) { return Promise.reject(new Error("no refreshToken hook")); }
    if (this._refreshing) { return this._refreshing; }
    this._refreshing = Promise.resolve().then(function () { return self.refreshToken(); }).then(function (answer) {
      self._refreshing = null;
      if (!answer) { throw new Error("refreshToken gave no token"); }
      self.setToken(typeof answer === "string" ? answer : answer.token, answer.expires_at);
    }, function (err) { self._refreshing = null; throw err; });
    return this._refreshing;
  };

  /** Replaces the token (and its expiry); the stream reconnects with it, losing nothing. */
  Inbox.prototype.setToken = function (token, expiresAt) {
    this.token = token;
    this.expiresAt = expiresAt ? new Date(expiresAt) : null;
    this._scheduleRefresh();
    if (this.source) { this._connect(); }
  };

  Inbox.prototype._scheduleRefresh = function () {
    var self = this;
    clearTimeout(this.refreshTimer);
    if (!this.refreshToken || !this.expiresAt || isNaN(this.expiresAt.getTime())) { return; }
    // A minute before expiry (at least 5 s from now).
    var wait = Math.max(this.expiresAt.getTime() - Date.now() - 60000, 5000);
    this.refreshTimer = setTimeout(function () {
      self._refresh().catch(function () { self._scheduleRetryRefresh(); });
    }, wait);
  };

  Inbox.prototype._scheduleRetryRefresh = function () {
    var self = this;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(function () {
      self._refresh().catch(function () { self._scheduleRetryRefresh(); });
    }, 15000);
  };

  // -- data ------------------------------------------------------------------------------------

  Inbox.prototype._start = function (locale) {
    var self = this;
    this._scheduleRefresh();
    this._fetch("/inbox/me").then(function (me) {
      if (me && me.preferences_url) {
        var url = safeUrl(me.preferences_url);
        if (url) { self.prefs.href = url; self.prefs.hidden = false; }
      }
      if (!locale && me && me.locale && STRINGS[me.locale.slice(0, 2)]) {
        self.strings = STRINGS[me.locale.slice(0, 2)];
        self._texts();
        self._render();
      }
    }).catch(function () { /* the link is optional */ });
    Promise.all([this._fetch("/inbox/counts").then(function (c) { self._setCounts(c); }),
      this._loadPage()]).catch(function () { self._showStatus(self.t("error")); }).then(function () {
      self._connect();
    });
  };

  Inbox.prototype._loadPage = function () {
    var self = this;
    var path = "/inbox/messages?status=all&page_size=" + this.pageSize;
    if (this.next) {
      path = /^https?:/.test(this.next) ? this.next : path + "&cursor=" + encodeURIComponent(this.next);
    }
    return this._fetch(path).then(function (body) {
      var items = Array.isArray(body) ? body : (body.results || body.items || body.messages || []);
      self.next = Array.isArray(body) ? null : (body.next || body.next_cursor || null);
      items.forEach(function (m) { self._add(m, false); });
      self.loaded = true;
      self._render();
    });
  };

  Inbox.prototype._add = function (message, live) {
    if (!message || !message.id) { return false; }
    var seq = Number(message.seq) || 0;
    if (seq > this.lastSeq) { this.lastSeq = seq; }
    if (this.messages[message.id]) {  // a replay of what we have: never shown twice
      return false;
    }
    if (message.archived_at) { return false; }
    this.messages[message.id] = message;
    var order = this.order, i = 0;
    while (i < order.length && (Number(this.messages[order[i]].seq) || 0) > seq) { i++; }
    order.splice(i, 0, message.id);
    if (live) { this._announce(this.t("newMessage", {title: message.title || ""})); }
    return true;
  };

  Inbox.prototype._setCounts = function (counts) {
    if (!counts) { return; }
    ["unread", "unseen", "total"].forEach(function (k) {
      if (typeof counts[k] === "number") { this.counts[k] = counts[k]; }
    }, this);
    this._renderCounts();
  };

  Inbox.prototype._refreshCounts = function (body) {
    var self = this;
    if (body && body.counts) { this._setCounts(body.counts); return Promise.resolve(); }
    return this._fetch("/inbox/counts").then(function (c) { self._setCounts(c); }).catch(function () {});
  };

  // -- live ------------------------------------------------------------------------------------

  Inbox.prototype._connect = function () {
    var self = this;
    if (this.destroyed || typeof global.EventSource === "undefined") { return; }
    this._disconnect();
    var sep = this.streamUrl.indexOf("?") === -1 ? "?" : "&";
    var url = this.streamUrl + sep + "token=" + encodeURIComponent(this.token);
    // After the newest message shown (0: the list was empty, so every message is new). When
    // the list could not be loaded, none: the stream starts after the latest message.
    if (this.loaded || this.lastSeq > 0) {
      url += "&last_event_id=" + encodeURIComponent(String(this.lastSeq));
    }
    var source = new global.EventSource(url);
    this.source = source;
    this.wrap.setAttribute("data-live", "connecting");
    source.addEventListener("open", function () {
      self.retryMs = 1000;
      self.wrap.setAttribute("data-live", "open");  // for host pages' CSS (and tests)
      self._showStatus("");
    });
    source.addEventListener("message", function (e) {
      var message;
      try { message = JSON.parse(e.data); } catch (err) { return; }
      if (message && message.message && message.seq !== undefined) { message = message.message; }
      if (self._add(message, true)) { self._render(); }
      if (self.onEvent) { self.onEvent("message", message); }
    });
    source.addEventListener("counts", function (e) {
      try { self._setCounts(JSON.parse(e.data)); } catch (err) { /* ignored */ }
      if (self.onEvent) { self.onEvent("counts", self.counts); }
    });
    source.addEventListener("token_expired", function () {
      // The stream's last event when its token expires (then it closes): with the host page's
      // hook, a fresh token at once and a reconnect from the last seq shown. Without it, the
      // close is handled as any other (below: back off, and the API tells us why).
      if (self.source !== source || !self.refreshToken) { return; }
      self._disconnect();
      self.wrap.setAttribute("data-live", "reconnecting");
      self._refresh().catch(function () { self._scheduleRetryRefresh(); }).then(function () {
        if (!self.source) { self._connect(); }
      });
    });
    source.addEventListener("error", function () {
      // We reconnect ourselves, from the last seq we showed, after a backoff: the replay
      // brings what was missed, duplicates are dropped by id.
      if (self.source !== source) { return; }
      self._disconnect();
      self.wrap.setAttribute("data-live", "reconnecting");
      self._showStatus(self.t("offline"));
      var wait = self.retryMs + Math.floor(Math.random() * 250);
      self.retryMs = Math.min(self.retryMs * 2, 30000);
      self.reconnectTimer = setTimeout(function () {
        // A refused stream (expired token …) gives no status to EventSource: ask the API.
        self._fetch("/inbox/counts").then(function (c) { self._setCounts(c); }, function () {})
          .then(function () { self._connect(); });
      }, wait);
    });
  };

  Inbox.prototype._disconnect = function () {
    clearTimeout(this.reconnectTimer);
    if (this.source) {
      var source = this.source;
      this.source = null;
      source.close();
    }
  };

  // -- actions ---------------------------------------------------------------------------------

  Inbox.prototype._post = function (path) {
    return this._fetch(path, {method: "POST", body: "{}"});
  };

  Inbox.prototype.markRead = function (id, read) {
    var self = this, message = this.messages[id];
    if (!message) { return Promise.resolve(); }
    var now = new Date().toISOString();
    return this._post("/inbox/messages/" + encodeURIComponent(id) + (read === false ? "/unread" : "/read"))
      .then(function (body) {
        message.read_at = read === false ? null : (message.read_at || now);
        if (read !== false) { message.seen_at = message.seen_at || now; }
        self._render(id);
        self._announce(read === false ? self.t("markUnread") : self.t("markedRead"));
        return self._refreshCounts(body);
      });
  };

  Inbox.prototype.markAllRead = function () {
    var self = this, now = new Date().toISOString();
    return this._post("/inbox/messages/read-all").then(function (body) {
      self.order.forEach(function (id) {
        var m = self.messages[id];
        m.read_at = m.read_at || now;
        m.seen_at = m.seen_at || now;
      });
      self._render();
      self._announce(self.t("allRead"));
      return self._refreshCounts(body);
    });
  };

  Inbox.prototype.archive = function (id) {
    var self = this;
    var index = this.order.indexOf(id);
    return this._post("/inbox/messages/" + encodeURIComponent(id) + "/archive").then(function (body) {
      delete self.messages[id];
      self.order = self.order.filter(function (x) { return x !== id; });
      self._render();
      self._announce(self.t("archived"));
      // Focus stays in the list: the next message (or the previous, or the heading).
      var nextId = self.order[Math.min(index, self.order.length - 1)];
      var target = nextId && self.list.querySelector('[data-id="' + nextId + '"] .nhi-btn');
      (target || self.heading).focus();
      return self._refreshCounts(body);
    });
  };

  Inbox.prototype._markSeen = function () {
    var self = this;
    var unseen = this.order.filter(function (id) { return !self.messages[id].seen_at; }).slice(0, 20);
    unseen.forEach(function (id) {
      self.messages[id].seen_at = new Date().toISOString();
      self._post("/inbox/messages/" + encodeURIComponent(id) + "/seen").catch(function () {});
    });
  };

  Inbox.prototype._onListClick = function (e) {
    var button = e.target.closest("button[data-action]");
    var link = e.target.closest("a.nhi-link");
    var item = e.target.closest("[data-id]");
    if (!item) { return; }
    var id = item.getAttribute("data-id");
    if (button) {
      var action = button.getAttribute("data-action");
      button.disabled = true;
      var done = function () { button.disabled = false; };
      if (action === "read") { this.markRead(id, true).then(done, done); }
      if (action === "unread") { this.markRead(id, false).then(done, done); }
      if (action === "archive") { this.archive(id).catch(done); }
    } else if (link && this.messages[id] && !this.messages[id].read_at) {
      this.markRead(id, true);
    }
  };

  // -- open / close ----------------------------------------------------------------------------

  Inbox.prototype.toggle = function () { if (this.open) { this.close(true); } else { this.show(); } };

  Inbox.prototype.show = function () {
    this.open = true;
    this.panel.hidden = false;
    this.bell.setAttribute("aria-expanded", "true");
    this.heading.focus();
    this._markSeen();
  };

  Inbox.prototype.close = function (returnFocus) {
    this.open = false;
    this.panel.hidden = true;
    this.bell.setAttribute("aria-expanded", "false");
    if (returnFocus) { this.bell.focus(); }
  };

  // -- rendering -------------------------------------------------------------------------------

  Inbox.prototype._renderCounts = function () {
    var unread = this.counts.unread || 0;
    this.badge.textContent = unread > 99 ? "99+" : String(unread);
    this.badge.hidden = unread === 0;
    this.bellLabel.textContent = this.t("notifications") + (unread ? " (" + this.t("unread", {n: unread}) + ")" : "");
    this.wrap.setAttribute("data-unread", String(unread));
  };

  Inbox.prototype._item = function (m) {
    var li = el("li", {"class": "nhi-item" + (m.read_at ? "" : " nhi-unread"), "data-id": m.id,
      "data-seq": String(m.seq)});
    var titleId = this.id + "-m-" + m.id;
    var title = el("p", {"class": "nhi-title", id: titleId});
    var href = m.action_url ? safeUrl(m.action_url) : null;
    if (href) {
      var a = el("a", {"class": "nhi-link", href: href}, m.title || "");
      title.appendChild(a);
    } else {
      title.textContent = m.title || "";
    }
    if (!m.read_at) { title.insertBefore(el("span", {"class": "nhi-sr"}, this.t("unreadLabel") + ": "), title.firstChild); }
    li.appendChild(title);
    if (m.body) { li.appendChild(el("p", {"class": "nhi-body"}, m.body)); }
    var meta = el("div", {"class": "nhi-meta"});
    var when = m.created_at ? new Date(m.created_at) : null;
    meta.appendChild(el("time", {datetime: m.created_at || ""}, when && !isNaN(when) ? when.toLocaleString() : ""));
    var actions = el("div", {"class": "nhi-actions"});
    actions.appendChild(el("button", {type: "button", "class": "nhi-btn", "data-action": m.read_at ? "unread" : "read",
      "aria-describedby": titleId}, m.read_at ? this.t("markUnread") : this.t("markRead")));
    actions.appendChild(el("button", {type: "button", "class": "nhi-btn", "data-action": "archive",
      "aria-describedby": titleId}, this.t("archive")));
    meta.appendChild(actions);
    li.appendChild(meta);
    return li;
  };

  Inbox.prototype._render = function (onlyId) {
    var self = this;
    if (onlyId) {
      var old = this.list.querySelector('[data-id="' + onlyId + '"]');
      if (old && this.messages[onlyId]) {
        var focused = document.activeElement && old.contains(document.activeElement) ?
          document.activeElement.getAttribute("data-action") : null;
        var fresh = this._item(this.messages[onlyId]);
        old.parentNode.replaceChild(fresh, old);
        if (focused) { (fresh.querySelector(".nhi-btn") || this.heading).focus(); }
        return;
      }
    }
    var active = document.activeElement;
    var keep = active && this.list.contains(active) ? active.closest("[data-id]") : null;
    var keepId = keep && keep.getAttribute("data-id");
    var keepAction = active && active.getAttribute && active.getAttribute("data-action");
    var fragment = document.createDocumentFragment();
    this.order.forEach(function (id) { fragment.appendChild(self._item(self.messages[id])); });
    this.list.replaceChildren(fragment);
    this.empty.hidden = this.order.length > 0;
    this.list.hidden = this.order.length === 0;
    this.more.hidden = !this.next;
    if (keepId) {
      var again = this.list.querySelector('[data-id="' + keepId + '"] [data-action="' + keepAction + '"]') ||
        this.list.querySelector('[data-id="' + keepId + '"] .nhi-btn');
      if (again) { again.focus(); }
    }
  };

  Inbox.prototype._announce = function (text) {
    var live = this.live;
    live.textContent = "";
    setTimeout(function () { live.textContent = text; }, 50);
  };

  Inbox.prototype._showStatus = function (text) { this.status.textContent = text; };

  /** Stops the stream and timers and removes the widget. */
  Inbox.prototype.destroy = function () {
    this.destroyed = true;
    this._disconnect();
    clearTimeout(this.refreshTimer);
    document.removeEventListener("mousedown", this._outside);
    if (this.wrap.parentNode) { this.wrap.parentNode.removeChild(this.wrap); }
  };

  var api = {
    version: "1",
    mount: function (element, options) {
      if (typeof element === "string") { element = document.querySelector(element); }
      return new Inbox(element, options);
    },
    instances: []
  };

  // <script src="…/inbox.js" data-token="…"> mounts itself (next to the tag, or in data-target).
  var script = document.currentScript;
  if (script && script.getAttribute("data-token")) {
    var target = script.getAttribute("data-target");
    var mountAt = target ? document.querySelector(target) : null;
    if (!mountAt) {
      mountAt = document.createElement("div");
      script.parentNode.insertBefore(mountAt, script);
    }
    var refreshName = script.getAttribute("data-refresh");
    var start = function () {
      api.instances.push(api.mount(mountAt, {
        token: script.getAttribute("data-token"),
        expiresAt: script.getAttribute("data-expires-at"),
        api: script.getAttribute("data-api") || new URL("/api/v1", script.src).href,
        stream: script.getAttribute("data-stream") || undefined,
        locale: script.getAttribute("data-locale") || undefined,
        refreshToken: refreshName && typeof global[refreshName] === "function" ? global[refreshName] : undefined
      }));
    };
    if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
  }

  global.NotifyHubInbox = api;
})(window);
