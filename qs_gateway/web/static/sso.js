// "Sign in with <provider>": one button per external (OpenID Connect) provider of the gateway,
// beside the API-key and password forms. The browser goes to the gateway's authorize endpoint
// (which sends it on to the provider with PKCE, state and nonce) and comes back to the page with
// a one-time code that auth.js exchanges for the session (finishExternalLogin).

import { startExternalLogin } from "./auth.js";
import { byId, el, show } from "./dom.js";

/** Offer a button for each provider that signs in through a browser. */
export function offerProviderButtons(providers) {
  const external = providers.filter((p) => p.mode === "external" && p.authorization_url);
  const buttons = byId("sso-buttons");
  buttons.replaceChildren(
    ...external.map((provider) =>
      el("button", { type: "button", text: `Sign in with ${provider.name}`, onclick: () => startExternalLogin(provider) }),
    ),
  );
  show(buttons, external.length > 0);
}
