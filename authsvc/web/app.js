// The authsvc self-service page: plain JavaScript, no build step, no dependencies.
//
// Tokens: the access token lives only in the `accessToken` variable of this closure
// (never in localStorage, sessionStorage or the DOM), so a reload forgets it. The
// refresh token is an HttpOnly cookie this script can neither read nor store; the
// server rotates it on every refresh. Refreshing needs the double-submit CSRF value,
// copied from the readable `__Host-authsvc_csrf` cookie into the X-CSRF-Token header.
// Only the __Host- names count: a sibling subdomain can plant an unprefixed cookie on
// the parent domain, never one with the prefix.
"use strict";

(() => {
  const API = "/api/v1/user";
  const CSRF_COOKIE = "__Host-authsvc_csrf";
  // Renew this long before expiry, but not before a third of the lifetime has passed
  // (short lifetimes). `expires_in` counts whole seconds, so the token may die up to a
  // second early; one refused as expired anyway is renewed and the call retried.
  const RENEW_BEFORE_MS = 30_000;
  const RETRY_AFTER_OUTAGE_MS = 5_000;

  let accessToken = null;
  let expiresAt = 0; // Date.now() at which the access token expires
  let renewTimer = null;
  let countdownTimer = null;
  let refreshing = null; // the one refresh in flight, shared by every caller

  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, envelope) {
      const data = (envelope && envelope.data) || {};
      super((envelope && envelope.msg) || "The service did not answer.");
      this.status = status;
      this.slug = data.error || "network_error";
      this.fields = data.fields || null;
    }
  }

  function readCookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...value] = part.trim().split("=");
      if (key === name) return decodeURIComponent(value.join("="));
    }
    return null;
  }

  // One request; resolves to the envelope's data, rejects with an ApiError.
  async function send(method, path, { body, bearer = true } = {}) {
    const headers = { Accept: "application/json" };
    const csrf = readCookie(CSRF_COOKIE);
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (bearer && accessToken) headers.Authorization = `Bearer ${accessToken}`;
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch {
      throw new ApiError(0, null);
    }
    const envelope = await response.json().catch(() => null);
    // The envelope's code is authoritative (legacy deployments answer HTTP 200 always).
    const code = envelope && typeof envelope.code === "number" ? envelope.code : response.status;
    if (code >= 400 || !response.ok || !envelope) throw new ApiError(code, envelope);
    return envelope.data;
  }

  // An authenticated call; an expired access token is renewed once and the call retried.
  async function call(method, path, body) {
    try {
      return await send(method, path, { body });
    } catch (error) {
      if (error.slug !== "token_expired") throw error;
      await refresh();
      return send(method, path, { body });
    }
  }

  function refresh() {
    refreshing ??= send("POST", "/refresh", { bearer: false })
      .then(useTokens)
      .finally(() => {
        refreshing = null;
      });
    return refreshing;
  }

  function useTokens(data) {
    accessToken = data.access_token;
    const lifetime = data.expires_in * 1000;
    expiresAt = Date.now() + lifetime;
    clearTimeout(renewTimer);
    renewTimer = setTimeout(renewSilently, Math.max(lifetime - RENEW_BEFORE_MS, lifetime / 3));
    $("renewed").textContent = `, last at ${new Date().toLocaleTimeString()}`;
    tick();
  }

  async function renewSilently() {
    try {
      await refresh();
    } catch (error) {
      if (error.status === 0 || error.status >= 500) {
        // An outage changes nothing server-side: the refresh cookie still works later.
        renewTimer = setTimeout(renewSilently, RETRY_AFTER_OUTAGE_MS);
      } else {
        signOut(`${error.message} Please log in again.`);
      }
    }
  }

  function tick() {
    const left = Math.max(0, Math.ceil((expiresAt - Date.now()) / 1000));
    const minutes = Math.floor(left / 60);
    $("expires-in").textContent = `${minutes}:${String(left % 60).padStart(2, "0")}`;
    $("expires-at").textContent = `(at ${new Date(expiresAt).toLocaleTimeString()})`;
  }

  // -- views ---------------------------------------------------------------------
  function show(view) {
    $("resuming").hidden = view !== "resuming";
    $("login-view").hidden = view !== "login";
    $("account-view").hidden = view !== "account";
  }

  function notify(text) {
    $("notice").textContent = text;
    $("notice").hidden = !text;
  }

  function errorBox(element) {
    return element.closest("section").querySelector(".error");
  }

  function showError(box, error) {
    const details = Object.values(error.fields || {}).flat();
    box.textContent = [error.message, ...details].join(" ") + ` (${error.slug})`;
    box.hidden = false;
  }

  // Runs a user action with its button disabled; a dead session sends the user back
  // to the login form, any other error is shown next to the action.
  async function act(element, action) {
    const box = errorBox(element);
    const button = element.tagName === "FORM" ? element.querySelector("[type=submit]") : element;
    box.hidden = true;
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      const ended = error.status === 401 && error.slug !== "invalid_credentials";
      if (ended && accessToken) signOut(`${error.message} Please log in again.`);
      else showError(box, error);
    } finally {
      button.disabled = false;
    }
  }

  function signOut(text) {
    accessToken = null;
    clearTimeout(renewTimer);
    clearInterval(countdownTimer);
    $("sessions").replaceChildren();
    $("password-form").reset();
    notify(text);
    show("login");
    $("username").focus();
  }

  // Shows the account view and fills it; errors appear in the sessions section.
  function enterAccount() {
    show("account");
    clearInterval(countdownTimer);
    countdownTimer = setInterval(tick, 1000);
    return act($("reload-sessions"), async () => {
      const { username } = await call("GET", "/me");
      $("signed-in-as").textContent = username;
      $("password-username").defaultValue = username; // survives form.reset()
      await loadSessions();
    });
  }

  // -- sessions ------------------------------------------------------------------
  function formatTime(seconds) {
    return seconds ? new Date(seconds * 1000).toLocaleString() : "–";
  }

  // "Firefox on Android" from a user agent string; the full string is shown too.
  function describeAgent(agent) {
    if (!agent) return null;
    const app = /(Edg|OPR|Firefox|Chrome|Chromium|Safari|curl|python-requests|okhttp)\//.exec(agent);
    const os = /(Android|iPhone|iPad|Windows|Mac OS X|CrOS|Linux)/.exec(agent);
    const names = { Edg: "Edge", OPR: "Opera", "Mac OS X": "macOS", CrOS: "ChromeOS" };
    const name = (match) => names[match[1]] || match[1];
    if (app && os) return `${name(app)} on ${name(os)}`;
    return app ? name(app) : null;
  }

  function sessionItem(session) {
    const item = $("session-template").content.firstElementChild.cloneNode(true);
    const field = (selector, text) => {
      item.querySelector(selector).textContent = text || "–";
    };
    item.dataset.sessionId = session.session_id;
    field(".session-name", session.device_id || describeAgent(session.user_agent) || "Unknown device");
    field(".device-id", session.device_id);
    field(".user-agent", session.user_agent);
    field(".ip", session.ip);
    field(".created", formatTime(session.created));
    field(".last-refresh", formatTime(session.last_refresh));
    const revoke = item.querySelector(".revoke");
    if (session.current) {
      item.classList.add("current");
      item.querySelector(".badge").hidden = false;
      revoke.textContent = "Log out";
      revoke.addEventListener("click", () => act(revoke, logOut));
    } else {
      revoke.setAttribute("aria-label", `Revoke ${item.querySelector(".session-name").textContent}`);
      revoke.addEventListener("click", () => act(revoke, () => revokeSession(session.session_id)));
    }
    return item;
  }

  async function loadSessions() {
    const { sessions } = await call("GET", "/sessions");
    sessions.sort((a, b) => b.current - a.current || b.last_refresh - a.last_refresh);
    $("sessions").replaceChildren(...sessions.map(sessionItem));
  }

  async function revokeSession(sessionId) {
    await call("DELETE", `/sessions/${encodeURIComponent(sessionId)}`);
    notify("The session was ended.");
    await loadSessions();
  }

  // -- actions ---------------------------------------------------------------------
  async function logIn(form) {
    const data = await send("POST", "/login", {
      bearer: false,
      body: {
        username: form.elements.username.value,
        password: form.elements.password.value,
        transport: "cookie",
      },
    });
    form.reset();
    notify("");
    useTokens(data);
    await enterAccount();
  }

  async function logOut() {
    try {
      await call("POST", "/logout");
    } catch (error) {
      if (error.status !== 401) throw error; // already ended: nothing left to do
    }
    signOut("You have logged out.");
  }

  async function logOutEverywhere() {
    if (!window.confirm("Log out of every session, on every device?")) return;
    await call("POST", "/logout-all");
    signOut("You have been logged out everywhere.");
  }

  async function changePassword(form) {
    const { old_password, new_password, repeat_password } = form.elements;
    if (new_password.value !== repeat_password.value) {
      throw new ApiError(422, {
        msg: "The two new passwords differ.",
        data: { error: "validation_failed" },
      });
    }
    await call("POST", "/password", {
      old_password: old_password.value,
      new_password: new_password.value,
    });
    form.reset();
    notify("Your password was changed; every other session was logged out.");
    await loadSessions();
  }

  // On load: resume the session from the refresh cookie when there is one. The CSRF
  // cookie is the readable sign of it (the refresh cookie itself is invisible here).
  async function resume() {
    if (!readCookie(CSRF_COOKIE)) return show("login");
    show("resuming");
    try {
      await refresh();
    } catch (error) {
      show("login");
      if (error.status === 0 || error.status >= 500) notify(error.message);
      return;
    }
    await enterAccount();
  }

  function onSubmit(id, action) {
    $(id).addEventListener("submit", (event) => {
      event.preventDefault();
      act(event.currentTarget, () => action(event.currentTarget));
    });
  }

  function onClick(id, action) {
    $(id).addEventListener("click", (event) => act(event.currentTarget, action));
  }

  onSubmit("login-form", logIn);
  onSubmit("password-form", changePassword);
  onClick("logout", logOut);
  onClick("logout-all", logOutEverywhere);
  onClick("reload-sessions", loadSessions);
  // Timers sleep in background tabs: renew at once when the page is seen again late.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && accessToken && Date.now() >= expiresAt) {
      renewSilently();
    }
  });
  resume();
})();
