// Who the page acts for: an API key, or the tokens of a login (password or OpenID Connect).
//
// Where credentials are kept:
// - an API key: sessionStorage (this tab only), or localStorage when the person ticks
//   "Remember on this computer";
// - tokens of a login: the access token in memory only; the refresh token in sessionStorage, so
//   that reloading the tab keeps the person signed in (closing the tab forgets it). The access
//   token is renewed before it expires.

import { ApiError, request, useCredentials } from "./api.js";

const KEY_ITEM = "qs-gateway.api-key";
const REFRESH_ITEM = "qs-gateway.refresh-token";
const OIDC_ITEM = "qs-gateway.oidc-sign-in";
export const OIDC_STATE_PREFIX = "qsui."; // the gateway sends the provider's redirect on to the page

let apiKey = null;
let accessToken = null;
let refreshToken = null;
let renewTimer = null;
let renewing = null;
let onLost = () => {};

useCredentials({
  header: () => (apiKey ? `ApiKey ${apiKey}` : accessToken ? `Bearer ${accessToken}` : null),
  renew: () => renew(),
  lost: (error) => onLost(error),
});

/** Called when the credentials stop working (a revoked key, an ended session). */
export function whenLost(callback) {
  onLost = callback;
}

export function signedIn() {
  return Boolean(apiKey || accessToken);
}

export function method() {
  return apiKey ? "api_key" : accessToken ? "token" : null;
}

function forget() {
  clearTimeout(renewTimer);
  apiKey = accessToken = refreshToken = null;
  for (const storage of [sessionStorage, localStorage]) storage.removeItem(KEY_ITEM);
  sessionStorage.removeItem(REFRESH_ITEM);
}

/** The credentials this tab had (or the remembered API key); false if there are none. */
export async function restore() {
  const key = sessionStorage.getItem(KEY_ITEM) || localStorage.getItem(KEY_ITEM);
  if (key) {
    apiKey = key;
    return true;
  }
  refreshToken = sessionStorage.getItem(REFRESH_ITEM);
  return refreshToken ? renew() : false;
}

export function useApiKey(key, remember) {
  forget();
  apiKey = key;
  (remember ? localStorage : sessionStorage).setItem(KEY_ITEM, key);
}

function accept(tokens) {
  accessToken = tokens.access_token;
  refreshToken = tokens.refresh_token;
  sessionStorage.setItem(REFRESH_ITEM, refreshToken);
  clearTimeout(renewTimer);
  // Renew at three quarters of the lifetime; a sleeping tab renews on its next 401 instead.
  const lifetime = Number(tokens.expires_in) || 60;
  renewTimer = setTimeout(() => renew(), Math.max(500, lifetime * 750));
}

/** New tokens for the session of the refresh token; false if the session has ended. */
export function renew() {
  if (!refreshToken) return Promise.resolve(false);
  if (!renewing) {
    renewing = (async () => {
      try {
        const { data } = await request("POST", "auth/session/refresh", {
          body: { refresh_token: refreshToken },
          anonymous: true,
        });
        accept(data);
        return true;
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) forget();
        else renewTimer = setTimeout(() => renew(), 2000); // the gateway is away: try again
        return false;
      } finally {
        renewing = null;
      }
    })();
  }
  return renewing;
}

export async function passwordLogin(provider, username, password) {
  const { data } = await request("POST", `auth/provider/${encodeURIComponent(provider)}/token`, {
    form: { username, password },
    anonymous: true,
  });
  forget();
  accept(data);
}

function randomState() {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return OIDC_STATE_PREFIX + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Send the browser to the identity provider; it comes back to the page with ?code=&state=. */
export function startExternalLogin(provider) {
  const state = randomState();
  sessionStorage.setItem(OIDC_ITEM, JSON.stringify({ state, provider: provider.name }));
  const url = new URL(provider.authorization_url);
  url.searchParams.set("state", state);
  window.location.assign(url.href);
}

/** Finish a sign-in at an identity provider, if the page was opened with its ?code=. */
export async function finishExternalLogin() {
  const params = new URLSearchParams(window.location.search);
  const code = params.get("code");
  if (!code) return false;
  // The code is used once: take it out of the address bar and the history.
  window.history.replaceState(null, "", window.location.pathname);
  const started = JSON.parse(sessionStorage.getItem(OIDC_ITEM) || "null");
  sessionStorage.removeItem(OIDC_ITEM);
  if (!started || started.state !== params.get("state")) {
    throw new Error("This sign-in was not started from this tab; please sign in again.");
  }
  const { data } = await request("POST", `auth/provider/${encodeURIComponent(started.provider)}/code`, {
    query: { code },
    anonymous: true,
  });
  forget();
  refreshToken = data;
  if (!(await renew())) throw new Error("The identity provider's sign-in was not accepted.");
  return true;
}

function sessionOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sid || null;
  } catch {
    return null;
  }
}

/** Forget the credentials; a login's session is ended on the server too. */
export async function signOut() {
  const session = refreshToken && sessionOf(refreshToken);
  if (session && accessToken) {
    try {
      await request("DELETE", `auth/session/revoke/${encodeURIComponent(session)}`);
    } catch {
      // already ended, or the gateway is away: the tokens are forgotten all the same
    }
  }
  forget();
}
