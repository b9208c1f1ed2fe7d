// The device approval page (RFC 8628 verification URI): plain JavaScript on the SDK.
//
// The owner of a keyboard-less device logs in here (or resumes the session of the
// refresh cookie), enters the code the device shows (or arrives with it in the link),
// sees which application asks for which access from where, and allows or denies it.
import { AuthClient } from "/sdk/v1/authsvc.js";

const auth = new AuthClient();
const $ = (id) => document.getElementById(id);
const VIEWS = ["resuming", "login-view", "code-view", "confirm-view", "done-view"];
let pending = null; // the request being confirmed

function show(view) {
  for (const id of VIEWS) $(id).hidden = id !== view;
}

function notify(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

async function act(element, action) {
  const box = element.closest("section").querySelector(".error");
  const button = element.tagName === "FORM" ? element.querySelector("[type=submit]") : element;
  box.hidden = true;
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    box.textContent = `${error.message} (${error.slug})`;
    box.hidden = false;
  } finally {
    button.disabled = false;
  }
}

// The enveloped device API with the in-memory access token (no cookie: no CSRF needed).
async function call(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await auth.fetch(path, init);
  const envelope = await response.json();
  if (envelope.code !== 200) {
    const error = new Error(envelope.msg);
    error.slug = envelope.data?.error ?? "error";
    throw error;
  }
  return envelope.data;
}

function text(id, value) {
  $(id).textContent = value || "–";
}

async function lookUp(code) {
  const request = await call("GET", `/api/v1/device?user_code=${encodeURIComponent(code)}`);
  const me = await auth.me();
  pending = request;
  text("client-name", request.client_name);
  text("approver", me.username);
  text("shown-code", request.user_code);
  text("client-id", request.client_id);
  text("scopes", request.scope);
  text("device-name", request.device_name);
  text("device-ip", request.ip);
  text("device-agent", request.user_agent);
  show("confirm-view");
}

async function decide(approve) {
  await call("POST", `/api/v1/device/${approve ? "approve" : "deny"}`, {
    user_code: pending.user_code,
  });
  $("done-title").textContent = approve
    ? "Done: the device is signing in. You can close this page."
    : "Denied: the device was not let in.";
  show("done-view");
}

function startWithCode() {
  const code = new URLSearchParams(window.location.search).get("user_code");
  show("code-view");
  if (code) {
    $("user-code").value = code;
    act($("code-form"), () => lookUp(code));
  } else {
    $("user-code").focus();
  }
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  act(form, async () => {
    await auth.login(form.elements.username.value, form.elements.password.value);
    form.reset();
    startWithCode();
  });
});
$("code-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(event.currentTarget, () => lookUp($("user-code").value));
});
$("approve").addEventListener("click", (event) => act(event.currentTarget, () => decide(true)));
$("deny").addEventListener("click", (event) => act(event.currentTarget, () => decide(false)));
auth.addEventListener("sessionended", () => {
  notify("Your session has ended. Please log in again.");
  show("login-view");
});

(async () => {
  show("resuming");
  let resumed = false;
  try {
    resumed = await auth.resume();
  } catch (error) {
    notify(error.message);
  }
  if (resumed) startWithCode();
  else show("login-view");
})();
