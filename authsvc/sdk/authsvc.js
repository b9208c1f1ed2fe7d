// authsvc browser SDK: one ES module, no build step, no dependencies.
// Served by authsvc at /sdk/v1/authsvc.js, a short-cached entry point that re-exports this
// file under its content hash (types: /sdk/v1/authsvc.d.ts); usable as a plain file.
// @ts-self-types="./authsvc.d.ts"
//
// Tokens: the access token lives only in a private field of the AuthClient (never in
// localStorage, sessionStorage, a global or the DOM). The refresh token is an HttpOnly
// cookie this script cannot read; refreshing echoes the readable CSRF cookie in the
// X-CSRF-Token header (double submit).
//
// Tabs: every tab of the origin shares one cookie jar, so one refresh rotates the
// session for all of them. Refreshes run one at a time across tabs (Web Locks); the tab
// that refreshed hands the new access token to the others (BroadcastChannel). A tab that
// gets the lock after another tab refreshed notices it synchronously (the CSRF cookie
// changes with every rotation) and waits for that token instead of refreshing again.
//
// Compatibility: everything served under /sdk/v1/ stays compatible with the v1 API and
// with other v1 builds open in other tabs (lock and channel names, message format), since
// browsers may keep a year-old copy (immutable cache).

import { DpopKeys, makeProof } from "./dpop.js";

export const SDK_VERSION = "1.1.0";

// The readable double-submit cookie. Only the `__Host-` name counts: a sibling subdomain
// can plant an unprefixed cookie on the parent domain, never one with the prefix.
export const CSRF_COOKIE = "__Host-authsvc_csrf";
const CSRF_HEADER = "X-CSRF-Token";

// Envelope slugs that say a session is over; the same sets as the Python SDK
// (authsvc/client_errors.py). Answered to an API call they prove only that this access
// token is dead (`token_revoked` may be the revocation of the access token alone, RFC
// 7009), so the call renews once and is retried: only a refresh's answer ends a session.
export const SESSION_OVER_ERRORS = Object.freeze([
  "refresh_reused",
  "session_revoked",
  "session_expired",
  "token_revoked",
]);
// Answered to a refresh, also `token_expired` (a refresh token expires with its
// session's absolute lifetime; on an API call it only means "refresh") and
// `account_disabled`. `token_invalid` never ends it (a worker may not have seen a rotated
// key yet), nor does any answer that is not the service's envelope (a proxy's 401/502).
export const REFRESH_OVER_ERRORS = Object.freeze([
  ...SESSION_OVER_ERRORS,
  "token_expired",
  "account_disabled",
]);
const OVER_ON_REFRESH = new Set(REFRESH_OVER_ERRORS);
// An API call refused with one of these renews once and is sent again (invalid_token:
// the RFC 6750 challenge of an API that does not answer in the envelope).
const RENEW_AND_RETRY = new Set([...SESSION_OVER_ERRORS, "token_expired", "invalid_token"]);

const PROTOCOL = 1; // of the BroadcastChannel messages; bump only with the path's major
const DEFAULTS = {
  apiBase: "/api/v1/user",
  refreshMargin: 30, // seconds before expiry to renew (at most 2/3 of the lifetime)
  retryDelay: 5, // seconds between renewal attempts after a retryable failure
  handoffTimeout: 1, // seconds to wait for another tab's token before refreshing here
  requestTimeout: 15, // seconds; a hung request must not hold the cross-tab lock for ever
  dpop: false, // bind sessions to a non-extractable key of the origin (RFC 9449)
};

/** A failed call: `status` (0: no answer), `slug` (the envelope's `data.error`). */
export class AuthError extends Error {
  constructor(status, slug, message, { fields = null, envelope = false } = {}) {
    super(message || "The service did not answer.");
    this.name = "AuthError";
    this.status = status;
    this.slug = slug;
    this.fields = fields;
    this.envelope = envelope; // the answer was the service's {code, msg, data}
    this.sessionOver = false; // the session ended with it (sessionended was fired)
  }
}

function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return null;
}

/** The CSRF cookie's value, or null when there is no cookie session. */
export function readCsrf() {
  return readCookie(CSRF_COOKIE);
}

// The {code, msg, data} envelope in `text`, or null for anything else (a proxy's page).
function parseEnvelope(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const ok =
    value !== null &&
    typeof value === "object" &&
    Number.isInteger(value.code) &&
    typeof value.msg === "string" &&
    "data" in value;
  return ok ? value : null;
}

// The slug of a refused (401/403) answer: the envelope's, else the error of the
// WWW-Authenticate challenge (RFC 6750, RFC 9449); null for anything else.
async function refusal(response) {
  if (response.status !== 401 && response.status !== 403) return null;
  const envelope = parseEnvelope(await response.clone().text().catch(() => ""));
  if (envelope && envelope.code >= 400 && typeof envelope.data?.error === "string") {
    return envelope.data.error;
  }
  const challenge = /(?:^|[\s,])error\s*=\s*"?([\w.-]+)"?/.exec(
    response.headers.get("WWW-Authenticate") ?? "",
  );
  return challenge ? challenge[1] : null;
}

export class AuthClient extends EventTarget {
  #options;
  #api;
  #token = null;
  #tokenCsrf = null; // the CSRF cookie that came with #token: which rotation it is
  #scope = null; // what #token was granted
  #tokenType = "Bearer"; // "DPoP": #token is bound to the origin's key
  #keys = null; // the origin's DPoP key store (dpop option)
  #nonce = null; // the last DPoP-Nonce of the service
  #issuedAt = 0;
  #expiresAt = 0;
  #renewAt = 0;
  #active = false; // this tab has a session (ending it fires sessionended)
  #timer = null;
  #renewing = null; // the renewal in flight in this tab
  #waiters = new Set(); // renewals waiting for another tab's token
  #channel = null;
  #releasePresence = null;
  #onVisible = () => {
    if (document.visibilityState === "visible" && this.#active && this.#due()) this.#renewQuietly();
  };

  constructor(options = {}) {
    super();
    this.#options = { ...DEFAULTS, ...options };
    this.#api = this.#options.apiBase.replace(/\/$/, "");
    const names = `authsvc ${new URL(this.#api, location.href).pathname}`;
    this.#options.lockName ??= `${names} refresh`;
    this.#options.presenceLockName ??= `${names} tab`;
    if (this.#options.dpop) this.#keys = new DpopKeys(names);
    if (typeof BroadcastChannel === "function") {
      this.#channel = new BroadcastChannel(this.#options.channelName ?? `${names} session`);
      this.#channel.onmessage = (event) => this.#onMessage(event.data);
    }
    // Timers sleep in background tabs: renew at once when the tab is seen again late.
    document.addEventListener("visibilitychange", this.#onVisible);
  }

  /** True while this tab holds a session. */
  get signedIn() {
    return this.#active;
  }

  /** When the access token expires (ms since the epoch), or null. */
  get expiresAt() {
    return this.#token ? this.#expiresAt : null;
  }

  // -- session lifecycle ---------------------------------------------------------------
  /**
   * Log in with cookie transport; every tab of the origin gets the session. `scope`
   * overrides the constructor's for this login.
   */
  async login(username, password, { deviceId, scope } = {}) {
    const body = { username, password, transport: "cookie" };
    if (deviceId !== undefined) body.device_id = deviceId;
    if (this.#options.clientId !== undefined) body.client_id = this.#options.clientId;
    scope ??= this.#options.scope;
    if (scope !== undefined) body.scope = scope;
    // Under the lock: a refresh of the previous session must not land after it, and no
    // tab signs with the key being replaced. A new session gets a new key.
    const data = await this.#exclusive(async () => {
      const key = this.#keys ? await this.#keys.create() : null;
      return this.#send("POST", "/login", { body, key });
    });
    this.#adopt(this.#tokenFrom(data));
    return { sessionId: data.session_id, expiresAt: this.#expiresAt, scope: data.scope ?? null };
  }

  /** Pick up the session of the cookie (a reload, a new tab); false when there is none. */
  async resume() {
    if (this.#token) return true;
    if (!readCsrf()) return false;
    try {
      await this.getAccessToken();
      return true;
    } catch (error) {
      if (error.sessionOver || error.slug === "login_required") return false;
      throw error;
    }
  }

  /**
   * Renew now (one refresh for all tabs: a token another tab just got counts). With
   * `scope`, narrow the session for good (never wider than it holds: invalid_scope, and
   * the session stays); a narrowing refresh always rotates, after any renewal in flight.
   */
  async refresh({ scope } = {}) {
    if (scope === undefined) {
      await this.#renew(this.#token);
      return;
    }
    await this.#renewing?.catch(() => {});
    await this.#exclusive(() => this.#renewLocked(null, scope));
  }

  /** The scope the current access token was granted (space-separated), or null. */
  get scope() {
    return this.#token ? this.#scope : null;
  }

  /** A live access token, renewed first when it is due. */
  async getAccessToken() {
    const token = this.#token;
    if (token && !this.#due()) return token;
    try {
      await this.#renew(token);
    } catch (error) {
      // An outage: the token in hand still works until it expires.
      if (!error.sessionOver && this.#token && Date.now() < this.#expiresAt) return this.#token;
      throw error;
    }
    return this.#token;
  }

  /** End this session on the server; every tab gets sessionended (reason "logout"). */
  async logout() {
    const token = this.#token;
    try {
      if (token) {
        await this.#send("POST", "/logout", { token }).catch((error) => {
          if (error.slug !== "token_expired") throw error;
          return this.#logoutByCookie();
        });
      } else {
        await this.#logoutByCookie();
      }
    } catch (error) {
      // An enveloped 401: the session was already over, nothing left to end.
      if (!(error.envelope && error.status === 401)) throw error;
    }
    this.#end("logout", null);
  }

  /** End every session of the user, on every device (reason "logout_all"). */
  async logoutAll() {
    await this.#call("POST", "/logout-all");
    this.#end("logout_all", null);
  }

  /** Stop timers and listeners (the session stays; other tabs are not told). */
  close() {
    clearTimeout(this.#timer);
    this.#channel?.close();
    this.#channel = null;
    this.#present(false);
    document.removeEventListener("visibilitychange", this.#onVisible);
  }

  // -- calls -----------------------------------------------------------------------------
  /** Who is signed in: {user_id, username, roles, session_id}. */
  me() {
    return this.#call("GET", "/me");
  }

  /** The user's live sessions (devices). */
  async sessions() {
    return (await this.#call("GET", "/sessions")).sessions;
  }

  /** End one of the user's sessions. */
  async revokeSession(sessionId) {
    await this.#call("DELETE", `/sessions/${encodeURIComponent(sessionId)}`);
  }

  /** Change the password; every other session ends. */
  async changePassword(oldPassword, newPassword) {
    await this.#call("POST", "/password", { old_password: oldPassword, new_password: newPassword });
  }

  /**
   * `fetch` for the app's own API (same origin only: the token never leaves it), with
   * `Authorization: Bearer`. A 401 that a new token may cure (token_expired, a
   * session-over slug, `WWW-Authenticate: ... error="invalid_token"`) renews once and
   * retries; only the refresh's answer can end the session.
   */
  async fetch(input, init = {}) {
    const url = new URL(input instanceof Request ? input.url : String(input), location.href);
    if (url.origin !== location.origin) {
      throw new TypeError(`authsvc: the access token is only sent to ${location.origin}`);
    }
    const retry = input instanceof Request ? input.clone() : input;
    const method = init.method ?? (input instanceof Request ? input.method : "GET");
    const send = async (target, token) => {
      const base = init.headers ?? (target instanceof Request ? target.headers : undefined);
      const headers = new Headers(base);
      for (const [name, value] of Object.entries(await this.#credentials(method, url, token))) {
        headers.set(name, value);
      }
      return fetch(target, { ...init, headers });
    };
    const token = await this.getAccessToken();
    const response = await send(input, token);
    const slug = await refusal(response);
    const nonce = response.headers.get("DPoP-Nonce");
    if (slug === "use_dpop_nonce" && nonce && nonce !== this.#nonce) {
      this.#nonce = nonce;
      return send(retry, token);
    }
    if (!RENEW_AND_RETRY.has(slug)) return response;
    await this.#renew(token);
    return send(retry, this.#token);
  }

  // -- internals -------------------------------------------------------------------------
  // Authorization (and DPoP) headers for `token` on a request to `url`. Without a token
  // (login, cookie refresh) a proof by `key`, or by the origin's key when there is one.
  async #credentials(method, url, token, key = null) {
    const headers = {};
    const bound = token && this.#tokenType === "DPoP";
    if (token) headers.Authorization = `${bound ? "DPoP" : "Bearer"} ${token}`;
    if (bound || (!token && this.#keys)) key ??= await this.#keys?.current();
    if (key) {
      const accessToken = bound ? token : null;
      headers.DPoP = await makeProof(key, method, url, { accessToken, nonce: this.#nonce });
    }
    return headers;
  }

  // One request to the API; resolves to the envelope's data, rejects with an AuthError.
  // A use_dpop_nonce refusal that brings a new DPoP-Nonce is sent again once, with it.
  async #send(method, path, { token = null, csrf = null, body, key = null } = {}) {
    for (let attempt = 0; ; attempt++) {
      const nonce = this.#nonce;
      try {
        return await this.#sendOnce(method, path, { token, csrf, body, key });
      } catch (error) {
        if (attempt || error.slug !== "use_dpop_nonce" || this.#nonce === nonce) throw error;
      }
    }
  }

  async #sendOnce(method, path, { token, csrf, body, key }) {
    const url = new URL(this.#api + path, location.href).href;
    const credentials = await this.#credentials(method, url, token, key);
    const headers = { Accept: "application/json", ...credentials };
    if (csrf) headers[CSRF_HEADER] = csrf;
    const init = {
      method,
      headers,
      credentials: "same-origin",
      cache: "no-store",
      signal: AbortSignal.timeout(this.#options.requestTimeout * 1000),
    };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch {
      throw new AuthError(0, "connection_failed", null);
    }
    this.#nonce = response.headers.get("DPoP-Nonce") ?? this.#nonce;
    const envelope = parseEnvelope(await response.text().catch(() => ""));
    // The envelope's code is authoritative (legacy deployments answer HTTP 200 always).
    if (envelope && envelope.code >= 400) {
      const data = envelope.data ?? {};
      const slug = typeof data.error === "string" ? data.error : "unknown_error";
      const fields = data.fields ?? null;
      throw new AuthError(envelope.code, slug, envelope.msg, { fields, envelope: true });
    }
    if (!envelope || !response.ok) {
      const message = `Unexpected answer (HTTP ${response.status}).`;
      throw new AuthError(response.status, "invalid_response", message);
    }
    return envelope.data;
  }

  // An authenticated call: renewed first when due. A refusal that a new token may cure
  // (expired on the way, or this access token alone revoked) renews once and retries;
  // the renewal, not the API's answer, decides whether the session is over.
  async #call(method, path, body) {
    const token = await this.getAccessToken();
    try {
      return await this.#send(method, path, { token, body });
    } catch (error) {
      if (!error.envelope || !RENEW_AND_RETRY.has(error.slug)) throw error;
    }
    await this.#renew(token);
    return this.#send(method, path, { token: this.#token, body });
  }

  async #logoutByCookie() {
    const csrf = readCsrf();
    if (csrf) await this.#send("POST", "/logout", { csrf });
  }

  #tokenFrom(data) {
    const issuedAt = Date.now();
    const lifetime = data.expires_in * 1000;
    const csrf = readCsrf();
    const expiresAt = issuedAt + lifetime;
    const scope = data.scope ?? null;
    const tokenType = data.token_type === "DPoP" ? "DPoP" : "Bearer";
    return { token: data.access_token, csrf, issuedAt, expiresAt, lifetime, scope, tokenType };
  }

  // The token and when it was issued, as handed to other tabs.
  #state() {
    return {
      token: this.#token,
      csrf: this.#tokenCsrf,
      issuedAt: this.#issuedAt,
      expiresAt: this.#expiresAt,
      lifetime: this.#expiresAt - this.#issuedAt,
      scope: this.#scope,
      tokenType: this.#tokenType,
    };
  }

  #due() {
    return Date.now() >= this.#renewAt;
  }

  // Holds a token other than `stale` that is not due: somebody renewed already.
  #usable(stale) {
    return this.#token !== null && this.#token !== stale && !this.#due();
  }

  #renew(stale) {
    this.#renewing ??= this.#exclusive(() => this.#renewLocked(stale)).finally(() => {
      this.#renewing = null;
    });
    return this.#renewing;
  }

  // Runs holding the cross-tab lock: at most one tab of the origin is here. A `scope`
  // (narrowing) renewal always rotates: a token another tab got does not narrow.
  async #renewLocked(stale, scope) {
    if (scope === undefined && this.#usable(stale)) return;
    const csrf = readCsrf();
    if (!csrf) {
      // No cookie, no session to refresh (logged out in another tab, or expired).
      const error = new AuthError(401, "login_required", "Not signed in.");
      error.sessionOver = this.#end("login_required", null);
      throw error;
    }
    // The cookie rotated since our token (or we have none and other tabs do): another tab
    // refreshed and its token is on the way. Refreshing again would be a wasted rotation.
    const elsewhere = csrf !== this.#tokenCsrf;
    if (scope === undefined && elsewhere && (this.#token || (await this.#othersPresent()))) {
      await this.#awaitHandoff(csrf);
      if (this.#usable(stale)) return;
    }
    let data;
    try {
      data = await this.#send("POST", "/refresh", {
        csrf,
        body: scope === undefined ? undefined : { scope },
      });
    } catch (error) {
      // Only if the cookie is still the one sent: a login meanwhile started a new session.
      if (error.envelope && OVER_ON_REFRESH.has(error.slug) && readCsrf() === csrf) {
        error.sessionOver = this.#end(error.slug, error.message);
      }
      throw error;
    }
    this.#adopt(this.#tokenFrom(data));
  }

  #exclusive(task) {
    const locks = navigator.locks;
    return locks ? locks.request(this.#options.lockName, task) : task();
  }

  // Is another tab of the origin holding a session? (Each such tab holds a shared lock.)
  async #othersPresent() {
    if (!navigator.locks) return false;
    const { held = [] } = await navigator.locks.query();
    return held.some((lock) => lock.name === this.#options.presenceLockName);
  }

  #present(on) {
    if (on && !this.#releasePresence && navigator.locks) {
      const held = new Promise((resolve) => {
        this.#releasePresence = resolve;
      });
      const name = this.#options.presenceLockName;
      navigator.locks.request(name, { mode: "shared" }, () => held).catch(() => {});
    } else if (!on && this.#releasePresence) {
      this.#releasePresence();
      this.#releasePresence = null;
    }
  }

  // Resolves true once a token for the cookie `csrf` came from another tab, false on timeout.
  #awaitHandoff(csrf) {
    return new Promise((resolve) => {
      const waiter = { csrf, resolve };
      waiter.timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        resolve(false);
      }, this.#options.handoffTimeout * 1000);
      this.#waiters.add(waiter);
      this.#post({ type: "want", csrf });
    });
  }

  #adopt(state, { remote = false } = {}) {
    this.#token = state.token;
    this.#tokenCsrf = state.csrf;
    this.#scope = state.scope ?? null; // builds before 1.1 send none
    this.#tokenType = state.tokenType ?? "Bearer";
    this.#issuedAt = state.issuedAt;
    this.#expiresAt = state.expiresAt;
    const margin = this.#options.refreshMargin * 1000;
    this.#renewAt = state.issuedAt + Math.max(state.lifetime - margin, state.lifetime / 3);
    this.#active = true;
    this.#present(true);
    this.#schedule(this.#renewAt - Date.now());
    for (const waiter of this.#waiters) {
      if (waiter.csrf === state.csrf) {
        clearTimeout(waiter.timer);
        this.#waiters.delete(waiter);
        waiter.resolve(true);
      }
    }
    if (!remote) this.#post({ type: "token", ...this.#state() });
    const detail = { expiresAt: state.expiresAt, remote };
    this.dispatchEvent(new CustomEvent("tokenchanged", { detail }));
  }

  #schedule(delay) {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#renewQuietly(), Math.max(0, delay));
  }

  async #renewQuietly() {
    try {
      await this.#renew(this.#token);
    } catch (error) {
      // An outage changes nothing server-side: the refresh cookie still works later.
      if (!error.sessionOver && this.#active) this.#schedule(this.#options.retryDelay * 1000);
    }
  }

  // Drops the session here and in every tab; true if this tab had one (event fired).
  #end(reason, message, { remote = false } = {}) {
    if (!remote) this.#post({ type: "ended", reason, message });
    if (!this.#active) return false;
    this.#active = false;
    this.#token = null;
    this.#tokenCsrf = null;
    this.#expiresAt = 0;
    this.#renewAt = 0;
    clearTimeout(this.#timer);
    this.#present(false);
    this.dispatchEvent(new CustomEvent("sessionended", { detail: { reason, message, remote } }));
    return true;
  }

  #post(message) {
    this.#channel?.postMessage({ v: PROTOCOL, ...message });
  }

  #onMessage(message) {
    if (!message || message.v !== PROTOCOL) return;
    if (message.type === "token") {
      if (!this.#token || message.issuedAt > this.#issuedAt) this.#adopt(message, { remote: true });
    } else if (message.type === "ended") {
      this.#end(message.reason, message.message, { remote: true });
    } else if (message.type === "want") {
      // A tab waiting for the token of this rotation (new, or late for the broadcast).
      if (this.#token && this.#tokenCsrf === message.csrf && Date.now() < this.#expiresAt) {
        this.#post({ type: "token", ...this.#state() });
      }
    }
  }
}
