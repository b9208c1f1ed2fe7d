// DPoP (RFC 9449) for the authsvc browser SDK: the origin's key and the proofs it signs.
// Imported by authsvc.js from the same build folder; not an API of its own.
//
// The key is a WebCrypto ECDSA P-256 pair whose private half is non-extractable: script
// on the page (even injected script) can have it sign while the page is open, but can
// never read it out, so a token copied away is useless without the device. The pair is
// kept in IndexedDB (CryptoKey objects survive structured cloning, still non-extractable),
// so every tab of the origin and every reload signs with the same key, the one the
// cookie session is bound to.

const DB_NAME = "authsvc-dpop";
const STORE = "keys";
const ALGORITHM = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING = { name: "ECDSA", hash: "SHA-256" };
const encoder = new TextEncoder();

function b64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const segment = (value) => b64url(encoder.encode(JSON.stringify(value)));

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** The origin's DPoP key store (one IndexedDB database, a record per API base). */
export class DpopKeys {
  #name;
  #db = null;
  #memory = null; // where the key lives when IndexedDB is unavailable (this tab only)

  constructor(name) {
    this.#name = name;
  }

  async #store(mode) {
    if (!this.#db) {
      const open = indexedDB.open(DB_NAME, 1);
      open.onupgradeneeded = () => open.result.createObjectStore(STORE);
      this.#db = done(open);
    }
    return (await this.#db).transaction(STORE, mode).objectStore(STORE);
  }

  /** The stored key `{privateKey, jwk}`, or null. Read each time: another tab may log in. */
  async current() {
    try {
      return (await done((await this.#store("readonly")).get(this.#name))) ?? this.#memory;
    } catch {
      return this.#memory;
    }
  }

  /** A new key for a new session (call holding the cross-tab lock); replaces the old. */
  async create() {
    const pair = await crypto.subtle.generateKey(ALGORITHM, false, ["sign", "verify"]);
    const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", pair.publicKey);
    const record = { privateKey: pair.privateKey, jwk: { kty, crv, x, y } };
    this.#memory = record;
    try {
      await done((await this.#store("readwrite")).put(record, this.#name));
    } catch {
      // No IndexedDB (some private modes): the session is bound to this tab's key only;
      // other tabs and a reload cannot refresh it and log in again.
    }
    return record;
  }
}

/**
 * A proof for one request: `htm`, `htu` (no query or fragment), `iat`, a random `jti`,
 * `ath` when an access token goes with it, `nonce` when the server asked for one.
 */
export async function makeProof(key, method, url, { accessToken = null, nonce = null } = {}) {
  const target = new URL(url, location.href);
  const claims = {
    jti: b64url(crypto.getRandomValues(new Uint8Array(16))),
    htm: method.toUpperCase(),
    htu: `${target.origin}${target.pathname}`,
    iat: Math.floor(Date.now() / 1000),
  };
  if (accessToken) {
    claims.ath = b64url(await crypto.subtle.digest("SHA-256", encoder.encode(accessToken)));
  }
  if (nonce) claims.nonce = nonce;
  const input = `${segment({ typ: "dpop+jwt", alg: "ES256", jwk: key.jwk })}.${segment(claims)}`;
  // WebCrypto's ECDSA signature is r || s already: what JWS ES256 wants.
  const signature = await crypto.subtle.sign(SIGNING, key.privateKey, encoder.encode(input));
  return `${input}.${b64url(signature)}`;
}
