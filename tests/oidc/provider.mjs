// A real OpenID provider for the tests: the npm package oidc-provider (a certified implementation),
// configured from a JSON file the tests write (tests/oidc_support.py):
//
//   node provider.mjs CONFIG.json
//   {"port": 0, "issuer_path": "", "tenant": null, "audience": "...", "clients": [...],
//    "users": {"name": {"password", "groups"}}}
//
// It listens on 127.0.0.1:port and prints "listening <issuer>"; its issuer is <base><issuer_path>
// (Keycloak's are <base>/realms/<realm>), its endpoints are under the issuer.
// With "tenant" it plays Microsoft Entra (issuer_path /<tenant>/v2.0): its tokens carry `tid`, and
// /common/v2.0/.well-known/openid-configuration names the issuer template <base>/{tenantid}/v2.0.
//
// Two test-only endpoints (loopback only): POST /test/rotate-keys signs from now on with a new key
// (the old one stays published), POST /test/sign signs the posted claims with the current key (for
// expired, not-yet-valid and wrong-audience tokens the provider would never issue).

import { generateKeyPairSync, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import { SignJWT, importJWK } from "jose";
import Provider from "oidc-provider";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const host = "127.0.0.1";
let keys = [newKey()];
let provider = null;
let issuer = null;

function newKey() {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return { ...privateKey.export({ format: "jwk" }), kid: randomUUID(), alg: "RS256", use: "sig" };
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`;
}

function accountClaims(id) {
  const user = config.users[id];
  return {
    sub: id,
    preferred_username: id,
    name: user.name || id,
    email: `${id}@example.org`,
    groups: user.groups || [],
    ...(config.tenant ? { tid: config.tenant } : {}),
  };
}

function makeProvider() {
  const oidc = new Provider(issuer, {
    clients: config.clients,
    cookies: { keys: [randomUUID()] },
    jwks: { keys },
    pkce: { required: () => false },
    scopes: ["openid", "offline_access", "profile", "email", "groups"],
    claims: {
      openid: ["sub", ...(config.tenant ? ["tid"] : [])],
      profile: ["preferred_username", "name"],
      email: ["email"],
      groups: ["groups"],
    },
    conformIdTokenClaims: false, // the id_token carries the claims of its scopes
    findAccount: (ctx, id) =>
      config.users[id] ? { accountId: id, claims: () => accountClaims(id) } : undefined,
    // first-party clients: no consent screen, the grant is made on first use
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope("openid offline_access profile email groups");
      grant.addResourceScope(config.audience, "openid profile email groups");
      await grant.save();
      return grant;
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: (ctx, form, out, err) => {
          ctx.body = page("Enter your code", `${err ? "<p>The code is not valid.</p>" : ""}${form}<button type="submit" form="op.deviceInputForm">Continue</button>`);
        },
        userCodeConfirmSource: (ctx, form, client, deviceInfo, userCode) => {
          ctx.body = page("Confirm the device", `<p>${escape(userCode)}</p>${form}<button type="submit" form="op.deviceConfirmForm">Continue</button>`);
        },
        successSource: (ctx) => {
          ctx.body = page("Signed in", "<p>You may close this window.</p>");
        },
      },
      // access tokens are JWTs for the gateway (the audience), with the user's groups
      resourceIndicators: {
        enabled: true,
        defaultResource: () => config.audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: "openid profile email groups",
          audience: config.audience,
          accessTokenFormat: "jwt",
          accessTokenTTL: 300,
        }),
      },
    },
    extraTokenClaims: (ctx, token) =>
      token.kind === "AccessToken" && config.users[token.accountId] ? accountClaims(token.accountId) : undefined,
    ttl: { AccessToken: 300, IdToken: 300, DeviceCode: 300, Interaction: 600, Session: 3600, Grant: 3600 },
  });
  oidc.proxy = false;
  return oidc;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res, status, type, body) {
  res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store" });
  res.end(body);
}

const loginForm = (uid, error) =>
  page(
    "Sign in to the test provider",
    `${error ? `<p id="error">${escape(error)}</p>` : ""}
    <form method="post" action="/interaction/${escape(uid)}/login">
      <label>User name <input name="login" id="login" autofocus></label>
      <label>Password <input name="password" id="password" type="password"></label>
      <button type="submit" id="sign-in">Sign in</button>
    </form>`,
  );

async function interaction(req, res, url) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === "GET") return send(res, 200, "text/html", loginForm(details.uid));
  const form = new URLSearchParams(await readBody(req));
  const user = config.users[form.get("login")];
  if (!user || user.password !== form.get("password")) {
    return send(res, 200, "text/html", loginForm(details.uid, "Unknown user or wrong password"));
  }
  return provider.interactionFinished(req, res, { login: { accountId: form.get("login") } }, { mergeWithLastSubmission: false });
}

async function testEndpoint(req, res, url) {
  if (url.pathname === "/test/rotate-keys") {
    keys = [newKey(), ...keys];
    provider = makeProvider();
    return send(res, 200, "application/json", JSON.stringify({ kid: keys[0].kid }));
  }
  const claims = JSON.parse(await readBody(req));
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: "RS256", kid: keys[0].kid, typ: "at+jwt" })
    .sign(await importJWK(keys[0], "RS256"));
  return send(res, 200, "application/json", JSON.stringify({ token }));
}

async function entraDiscovery(req, res) {
  // what login.microsoftonline.com/common/v2.0 publishes: the issuer as a template
  const own = await fetch(`${issuer}/.well-known/openid-configuration`).then((r) => r.json());
  const template = issuer.replace(`/${config.tenant}/`, "/{tenantid}/");
  return send(res, 200, "application/json", JSON.stringify({ ...own, issuer: template }));
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, "http://localhost");
    if (url.pathname.startsWith("/interaction/")) return await interaction(req, res, url);
    if (url.pathname.startsWith("/test/") && req.method === "POST") return await testEndpoint(req, res, url);
    if (config.tenant && url.pathname === "/common/v2.0/.well-known/openid-configuration") {
      return await entraDiscovery(req, res);
    }
    // the provider's routes are under its issuer's path
    const path = config.issuer_path || "";
    if (path && url.pathname.startsWith(`${path}/`)) req.url = req.url.slice(path.length);
    return provider.callback()(req, res);
  } catch (error) {
    console.error(error);
    if (!res.headersSent) send(res, 500, "text/plain", String(error));
  }
});

server.listen(config.port || 0, host, async () => {
  const base = `http://${host}:${server.address().port}`;
  issuer = `${base}${config.issuer_path || ""}`;
  provider = makeProvider();
  console.log(`listening ${issuer}`);
});

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
