// Type declarations of the authsvc browser SDK (authsvc.js, served next to this file).

/** The SDK release; the major version is the one in the path (/sdk/v1/). */
export declare const SDK_VERSION: string;

/**
 * The content hash of the build the entry point /sdk/v1/authsvc.js re-exports
 * (/sdk/v1/authsvc.<SDK_BUILD>.js). Only the served entry point defines it: undefined
 * when the build file is imported directly or copied as a plain file.
 */
export declare const SDK_BUILD: string | undefined;

/** Name of the readable double-submit cookie (`__Host-` prefixed). */
export declare const CSRF_COOKIE: string;

/**
 * Envelope slugs that say a session is over. Answered to an API call they only make
 * the SDK renew once and retry (the access token alone may have been revoked); the
 * refresh's own answer decides whether the session ends.
 */
export declare const SESSION_OVER_ERRORS: readonly string[];

/** Envelope slugs that end the session when a refresh gets them (adds token_expired, account_disabled). */
export declare const REFRESH_OVER_ERRORS: readonly string[];

/** The CSRF cookie's value, or null when the browser holds no cookie session. */
export declare function readCsrf(): string | null;

/** A failed call. */
export declare class AuthError extends Error {
  constructor(
    status: number,
    slug: string,
    message?: string | null,
    options?: { fields?: Record<string, string[]> | null; envelope?: boolean },
  );
  /** The envelope's code, else the HTTP status; 0 when no answer arrived. */
  readonly status: number;
  /** The envelope's `data.error`, or `connection_failed`, `invalid_response`, `login_required`. */
  readonly slug: string;
  /** `data.fields` of a `validation_failed` answer. */
  readonly fields: Record<string, string[]> | null;
  /** True when the answer was the service's `{code, msg, data}` envelope. */
  readonly envelope: boolean;
  /** True when this error ended the session (a `sessionended` event was fired). */
  sessionOver: boolean;
}

export interface AuthClientOptions {
  /** Where the user API lives, same origin (default `/api/v1/user`). */
  apiBase?: string;
  /** The registered client logins go through (absent: the built-in `default`). */
  clientId?: string;
  /** Scopes to ask for at login, space-separated (absent: all the client's). */
  scope?: string;
  /** Renew this many seconds before expiry, at most 2/3 of the lifetime (default 30). */
  refreshMargin?: number;
  /** Seconds between renewal attempts after a retryable failure (default 5). */
  retryDelay?: number;
  /** Seconds to wait for another tab's token before refreshing here (default 1). */
  handoffTimeout?: number;
  /** Seconds before a request to the service is abandoned (default 15). */
  requestTimeout?: number;
  /**
   * Bind sessions to a key of the origin (DPoP, RFC 9449; default false): a
   * non-extractable ECDSA P-256 key kept in IndexedDB, shared by every tab, signs a
   * proof for every login, refresh (cookie included) and call of a bound session.
   */
  dpop?: boolean;
  /** Web Locks name of the cross-tab refresh lock (derived from apiBase by default). */
  lockName?: string;
  /** Web Locks name every tab holding a session holds in shared mode. */
  presenceLockName?: string;
  /** BroadcastChannel name shared by the tabs. */
  channelName?: string;
}

export interface LoginResult {
  sessionId: string;
  /** When the access token expires (ms since the epoch). */
  expiresAt: number;
  /** The scopes granted, space-separated (null from a server that does not say). */
  scope: string | null;
}

export interface Principal {
  user_id: string;
  username: string;
  roles: string[];
  session_id: string;
}

export interface SessionInfo {
  session_id: string;
  device_id: string | null;
  user_agent: string | null;
  ip: string | null;
  /** Seconds since the epoch. */
  created: number;
  last_refresh: number;
  expires: number;
  current: boolean;
}

export interface SessionEndedDetail {
  /**
   * Why: `logout`, `logout_all`, `login_required` (no cookie left), or the server's slug
   * (`session_revoked`, `refresh_reused`, `session_expired`, `token_revoked`,
   * `account_disabled`, `token_expired`).
   */
  reason: string;
  /** The server's message, when the server said so. */
  message: string | null;
  /** True when another tab ended it. */
  remote: boolean;
}

export interface TokenChangedDetail {
  expiresAt: number;
  /** True when another tab obtained the token. */
  remote: boolean;
}

export interface AuthClientEventMap {
  sessionended: CustomEvent<SessionEndedDetail>;
  tokenchanged: CustomEvent<TokenChangedDetail>;
}

export declare class AuthClient extends EventTarget {
  constructor(options?: AuthClientOptions);
  /** True while this tab holds a session. */
  readonly signedIn: boolean;
  /** When the access token expires (ms since the epoch), or null. */
  readonly expiresAt: number | null;
  /** The scopes of the current access token, space-separated, or null. */
  readonly scope: string | null;

  /** Log in with cookie transport; every tab of the origin gets the session. */
  login(
    username: string,
    password: string,
    options?: { deviceId?: string; scope?: string },
  ): Promise<LoginResult>;
  /** Pick up the cookie's session (reload, new tab); false when there is none. */
  resume(): Promise<boolean>;
  /**
   * Renew now; one refresh for every tab of the origin. `scope` narrows the session
   * for good (a scope it does not hold: AuthError `invalid_scope`, the session stays).
   */
  refresh(options?: { scope?: string }): Promise<void>;
  /** A live access token, renewed first when due. */
  getAccessToken(): Promise<string>;
  /** End this session (every tab gets `sessionended`). */
  logout(): Promise<void>;
  /** End every session of the user on every device. */
  logoutAll(): Promise<void>;
  /** Stop timers and listeners of this instance. */
  close(): void;

  me(): Promise<Principal>;
  sessions(): Promise<SessionInfo[]>;
  revokeSession(sessionId: string): Promise<void>;
  changePassword(oldPassword: string, newPassword: string): Promise<void>;
  /**
   * `fetch` with the access token, same origin only; renews once and retries on a 401
   * that a new token may cure (token_expired, token_revoked, invalid_token, ...).
   */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;

  addEventListener<K extends keyof AuthClientEventMap>(
    type: K,
    listener: (this: AuthClient, event: AuthClientEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof AuthClientEventMap>(
    type: K,
    listener: (this: AuthClient, event: AuthClientEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}
