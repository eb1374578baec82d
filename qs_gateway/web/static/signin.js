// The Sign in panel: an API key, or a login of a provider the server names (password or
// OpenID Connect), whichever the gateway offers.

import { ApiError, get } from "./api.js";
import { passwordLogin, useApiKey } from "./auth.js";
import { byId, el, show } from "./dom.js";
import { offerProviderButtons } from "./sso.js";

const API_KEY = "api-key";

/** The login providers, from the server; an older gateway without the endpoint: API keys only. */
export async function loadProviders() {
  try {
    return await get("auth/providers");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return { providers: [], single_user: true, anonymous: false };
    throw error;
  }
}

export class SignIn {
  constructor({ onSignedIn }) {
    this.panel = byId("signin");
    this.form = byId("signin-form");
    this.method = byId("signin-method");
    this.error = byId("signin-error");
    this.onSignedIn = onSignedIn;
    this.providers = [];
    this.method.addEventListener("change", () => this.methodChanged());
    this.form.addEventListener("submit", (event) => this.submit(event));
  }

  offer(info) {
    this.providers = info.providers || [];
    offerProviderButtons(this.providers); // external providers: a button each
    const usable = this.providers.filter((p) => p.mode === "password");
    this.method.replaceChildren(
      ...usable.map((p) => el("option", { value: p.name, text: p.mode === "password" ? `${p.name} (user name and password)` : p.name })),
      el("option", { value: API_KEY, text: "API key" }),
    );
    show(byId("method-field"), usable.length > 0);
    this.methodChanged();
  }

  provider() {
    return this.providers.find((p) => p.name === this.method.value);
  }

  methodChanged() {
    const provider = this.provider();
    show(byId("apikey-fields"), !provider);
    show(byId("password-fields"), provider?.mode === "password");
  }

  open(message = "") {
    this.error.textContent = message;
    show(this.panel, true);
    const first = this.panel.querySelector("select:not([hidden]), input:not([type=checkbox])");
    if (first && !byId("method-field").hidden) this.method.focus();
    else byId("api-key").focus();
  }

  close() {
    show(this.panel, false);
    this.error.textContent = "";
    byId("password").value = "";
    byId("api-key").value = "";
  }

  async submit(event) {
    event.preventDefault();
    this.error.textContent = "";
    const provider = this.provider();
    try {
      if (!provider) {
        const key = byId("api-key").value.trim();
        if (!key) throw new Error("Enter an API key.");
        useApiKey(key, byId("remember").checked);
      } else {
        await passwordLogin(provider.name, byId("username").value.trim(), byId("password").value);
      }
    } catch (error) {
      this.error.textContent = error.message;
      return;
    }
    await this.onSignedIn();
  }
}
