// The authsvc self-service page: plain JavaScript, no build step, no dependencies.
//
// Built on the browser SDK (/sdk/v1/authsvc.js): it keeps the access token in memory
// only, renews it before expiry (one refresh for all tabs), and fires "sessionended" in
// every tab when the session is over. This module only draws the page.
import { AuthClient, AuthError } from "/sdk/v1/authsvc.js";

const auth = new AuthClient();
let countdownTimer = null;

const $ = (id) => document.getElementById(id);

function tick() {
  const expiresAt = auth.expiresAt ?? Date.now();
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

// Runs a user action with its button disabled; any error is shown next to the action,
// except one that ended the session (the sessionended handler shows the login form).
async function act(element, action) {
  const box = errorBox(element);
  const button = element.tagName === "FORM" ? element.querySelector("[type=submit]") : element;
  box.hidden = true;
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    if (!error.sessionOver) showError(box, error);
  } finally {
    button.disabled = false;
  }
}

function signOut(text) {
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
  tick();
  return act($("reload-sessions"), async () => {
    const { username } = await auth.me();
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
  const sessions = await auth.sessions();
  sessions.sort((a, b) => b.current - a.current || b.last_refresh - a.last_refresh);
  $("sessions").replaceChildren(...sessions.map(sessionItem));
}

async function revokeSession(sessionId) {
  await auth.revokeSession(sessionId);
  notify("The session was ended.");
  await loadSessions();
}

// -- actions ---------------------------------------------------------------------
async function logIn(form) {
  await auth.login(form.elements.username.value, form.elements.password.value);
  form.reset();
  notify("");
  await enterAccount();
}

// Both end in the sessionended handler, in this tab and every other one.
function logOut() {
  return auth.logout();
}

async function logOutEverywhere() {
  if (!window.confirm("Log out of every session, on every device?")) return;
  await auth.logoutAll();
}

async function changePassword(form) {
  const { old_password, new_password, repeat_password } = form.elements;
  if (new_password.value !== repeat_password.value) {
    throw new AuthError(422, "validation_failed", "The two new passwords differ.");
  }
  await auth.changePassword(old_password.value, new_password.value);
  form.reset();
  notify("Your password was changed; every other session was logged out.");
  await loadSessions();
}

// On load: resume the session of the refresh cookie, or another tab's, when there is one.
async function resume() {
  show("resuming");
  let resumed = false;
  try {
    resumed = await auth.resume();
  } catch (error) {
    notify(error.message); // an outage: the session may still be there later
  }
  if (resumed) await enterAccount();
  else show("login");
}

const ENDED = {
  logout: "You have logged out.",
  logout_all: "You have been logged out everywhere.",
};

auth.addEventListener("sessionended", ({ detail }) => {
  signOut(ENDED[detail.reason] ?? `${detail.message ?? "Your session has ended."} Please log in again.`);
});

auth.addEventListener("tokenchanged", ({ detail }) => {
  $("renewed").textContent = `, last at ${new Date().toLocaleTimeString()}`;
  tick();
  // Logged in from another tab while this one shows the form: follow it.
  if (detail.remote && !$("login-view").hidden) {
    notify("");
    enterAccount();
  }
});

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
resume();
