// Swagger UI over this origin's /openapi.json. A file, not an inline script, so the
// page's Content-Security-Policy needs no 'unsafe-inline' for scripts.
//
// Two conveniences make every operation runnable from the page:
// * a successful login authorizes the page with its access token, so the protected
//   operations work right away (the Authorize button still takes any Bearer token,
//   e.g. a refresh token for GET /refresh);
// * after a cookie-transport login, calls that carry no Authorization header get the
//   double-submit X-CSRF-Token header from the readable `__Host-authsvc_csrf` cookie, as a
//   browser front-end does (see authsvc/web/app.js).
// Tokens are kept in memory only: no persistAuthorization, nothing in localStorage.
"use strict";
(() => {
  const LOGIN_PATH = "/api/v1/user/login";
  const CSRF_COOKIE = "__Host-authsvc_csrf";
  const CSRF_HEADER = "X-CSRF-Token";

  const readCookie = (name) => {
    const prefix = name + "=";
    const found = document.cookie.split("; ").find((c) => c.startsWith(prefix));
    return found ? decodeURIComponent(found.slice(prefix.length)) : null;
  };
  const hasHeader = (headers, name) =>
    Object.keys(headers || {}).some((key) => key.toLowerCase() === name.toLowerCase());

  function addCsrfHeader(request) {
    const csrf = readCookie(CSRF_COOKIE);
    if (csrf && !hasHeader(request.headers, "Authorization")
        && !hasHeader(request.headers, CSRF_HEADER)) {
      request.headers = { ...request.headers, [CSRF_HEADER]: csrf };
    }
    return request;
  }

  function authorizeAfterLogin(response) {
    const path = new URL(response.url, window.location.href).pathname;
    const token = response.ok && path.endsWith(LOGIN_PATH) && response.body
      && response.body.data && response.body.data.access_token;
    if (token) window.ui.preauthorizeApiKey("bearerAuth", token);
    return response;
  }

  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayRequestDuration: true,
    // The default validator badge loads an image from a third party: none here.
    validatorUrl: null,
    persistAuthorization: false,
    requestInterceptor: addCsrfHeader,
    responseInterceptor: authorizeAfterLogin,
  });
})();
