// The gateway's REST API, found relative to this module: <prefix>/ui/api.js -> <prefix>/api/.
//
// Credentials go in the Authorization header, never in cookies or URLs: every request is made
// with credentials "omit", so the API's cookie rules (the API-key cookie and its CSRF double
// submit) never apply to the page, and a cookie left by another client cannot act for it.

export const API_BASE = new URL("../api/", import.meta.url);

export class ApiError extends Error {
  constructor(status, detail, body = null) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.body = body;
  }

  /** A refusal for lack of scopes, not for bad or expired credentials. */
  get lacksScopes() {
    return this.status === 401 && this.message.startsWith("Not enough permissions");
  }
}

// Set by auth.js: the header to send, and how to renew expired credentials.
let credentials = { header: () => null, renew: async () => false, lost: () => {} };

export function useCredentials(provider) {
  credentials = provider;
}

export function authorizationHeader() {
  return credentials.header();
}

export function renewCredentials() {
  return credentials.renew();
}

export function apiUrl(path, query = {}) {
  const url = new URL(path, API_BASE);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
  }
  return url;
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * One request; resolves to {data, etag, notModified}. A 401 for an expired token is answered
 * before anything reaches RE Manager, so the request is sent once more after the renewal.
 */
export async function request(method, path, options = {}) {
  const { query, body, form, multipart, etag, anonymous = false, signal } = options;
  for (let attempt = 0; ; attempt += 1) {
    const headers = { Accept: "application/json" };
    const authorization = anonymous ? null : credentials.header();
    if (authorization) headers.Authorization = authorization;
    if (etag) headers["If-None-Match"] = etag;
    const init = { method, headers, credentials: "omit", cache: "no-store", signal };
    if (multipart) {
      init.body = multipart; // the browser writes the Content-Type with its boundary
    } else if (form) {
      init.body = new URLSearchParams(form);
    } else if (body !== undefined) {
      init.body = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(apiUrl(path, query), init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "The gateway did not answer");
    }
    if (response.status === 304) return { data: null, etag: response.headers.get("ETag"), notModified: true };
    const data = await readBody(response);
    if (response.ok) return { data, etag: response.headers.get("ETag"), notModified: false };
    const detail = data && typeof data === "object" && "detail" in data ? data.detail : response.statusText;
    const error = new ApiError(response.status, detail, data);
    if (response.status === 401 && authorization && !error.lacksScopes) {
      if (attempt === 0 && (await credentials.renew())) continue;
      credentials.lost(error);
    }
    throw error;
  }
}

/**
 * GET a list that RE Manager versions with a uid (queue, history, runs), at least as new as the
 * status that announced `wanted`. The gateway serves such lists from a cache checked against a
 * status that can be a moment older than the one the page has; then it is asked once more with
 * `reload`. `etag` (W/"<uid>") makes an unchanged list a 304.
 */
export async function getVersion(path, uidField, wanted, etag = null) {
  const answer = await request("GET", path, { etag });
  const uid = answer.notModified ? /"(.*)"/.exec(etag)?.[1] : answer.data?.[uidField];
  if (!wanted || uid === wanted) return answer;
  return request("GET", path, { query: { reload: true } });
}

export async function get(path, query) {
  return (await request("GET", path, { query })).data;
}

export async function post(path, body = {}) {
  return (await request("POST", path, { body })).data;
}

/** POST a FormData (files) as multipart/form-data. */
export async function upload(path, formData) {
  return (await request("POST", path, { multipart: formData })).data;
}

/** A command to RE Manager: its refusal ("success": false) becomes an error with its message. */
export async function command(path, body = {}) {
  const data = await post(path, body);
  if (data && data.success === false) throw new ApiError(200, data.msg || "RE Manager refused", data);
  return data;
}
