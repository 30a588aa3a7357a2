// OAuth 2.0 login with matrix-js-sdk's own OAuth client (the code Element Web signs in with),
// against the server's OAuth endpoints and pages.
//
//   node tests/clients/js/oauth.mjs <baseUrl>        e.g. http://localhost:8787
//
// The SDK discovers and validates the metadata (MatrixClient.getAuthMetadata), registers a client
// (OAuth2.registerClient), builds the authorization URL with PKCE, exchanges the code, refreshes
// and revokes. The person's part, the server's HTML pages, is played here with fetch: a cookie
// kept by hand, redirects followed one by one, each form posted with its CSRF token. Then the
// device authorization grant: the SDK starts it, the "person" approves the user code, the SDK's
// poll gets the tokens. Output: one JSON line per step, as scenario.mjs; exit 1 on the first
// failure.

import { createClient, OAuth2 } from "matrix-js-sdk";
import { logger as globalSdkLogger } from "matrix-js-sdk/lib/logger.js";

globalSdkLogger.disableAll?.();
const baseUrl = process.argv[2];
const REDIRECT = "http://127.0.0.1/callback";
const PASSWORD = "a long enough password";
const silent = Object.fromEntries(
  ["trace", "debug", "info", "log", "warn", "error"].map((level) => [level, () => {}]),
);
silent.getChild = () => silent;

function emit(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

async function step(name, fn) {
  const started = performance.now();
  try {
    const result = await fn();
    emit({ step: name, ok: true, ms: Math.round(performance.now() - started) });
    return result;
  } catch (err) {
    emit({ step: name, ok: false, ms: Math.round(performance.now() - started), error: String(err?.stack ?? err) });
    process.exit(1);
  }
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** The person's browser: one cookie, no automatic redirects. */
class Browser {
  cookie = "";

  async send(url, init = {}) {
    const headers = { ...(init.headers ?? {}), ...(this.cookie ? { cookie: this.cookie } : {}) };
    const res = await fetch(new URL(url, baseUrl), { ...init, headers, redirect: "manual" });
    for (const set of res.headers.getSetCookie()) {
      this.cookie = set.split(";")[0];
    }
    check(res.status < 500, `${url}: ${res.status}`);
    return res;
  }

  async page(url) {
    const res = await this.send(url);
    check(res.status === 200, `${url}: ${res.status}`);
    const html = await res.text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
    check(csrf, `${url} has no CSRF token`);
    return { html, csrf };
  }

  async post(url, fields) {
    return this.send(url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields).toString(),
    });
  }
}

const anon = createClient({ baseUrl, logger: silent });
const metadata = await step("discover and validate the metadata", () => anon.getAuthMetadata());

const clientId = await step("register the client", () =>
  OAuth2.registerClient(
    metadata,
    {
      client_name: "matrix-js-sdk check",
      client_uri: "https://app.example.org/",
      application_type: "native",
      redirect_uris: [REDIRECT],
    },
    silent,
  ),
);

const oauth = new OAuth2(metadata, { clientId }, silent);
const state = "js-" + Math.random().toString(36).slice(2);
const browser = new Browser();
const localpart = "js-oauth-" + Math.random().toString(36).slice(2, 8);

const code = await step("register through the pages and consent", async () => {
  const url = await oauth.generateAuthorizationCodeGrantUrl(state, REDIRECT, "fragment", "create");
  const start = await browser.send(url);
  check(start.status === 303, `authorize: ${start.status}`);
  const toRegister = start.headers.get("location");
  const next = new URL(toRegister, baseUrl).searchParams.get("next");
  const form = await browser.page(toRegister);
  const created = await browser.post("/oauth2/register", {
    csrf: form.csrf, username: localpart, password: PASSWORD, password2: PASSWORD, next,
  });
  check(created.status === 303, `register: ${created.status} ${await created.text()}`);
  const consentPath = created.headers.get("location");
  const consent = await browser.page(consentPath);
  check(consent.html.includes("matrix-js-sdk check"), "the consent page names the client");
  const answered = await browser.post("/oauth2/consent", {
    csrf: consent.csrf, id: new URL(consentPath, baseUrl).searchParams.get("id"), decision: "allow",
  });
  const callback = new URL(answered.headers.get("location"));
  check(callback.href.startsWith(REDIRECT), `callback: ${callback.href}`);
  const params = new URLSearchParams(callback.hash.slice(1));
  check(params.get("state") === state, "state comes back");
  return params.get("code");
});

const tokens = await step("exchange the code", () => oauth.completeAuthorizationCodeGrant(code, REDIRECT));

await step("whoami with the OAuth token", async () => {
  const client = createClient({ baseUrl, accessToken: tokens.access_token, logger: silent });
  const me = await client.whoami();
  check(me.user_id.startsWith(`@${localpart}:`), `user ${me.user_id}`);
  check(me.device_id === oauth.context.deviceId, `device ${me.device_id} vs ${oauth.context.deviceId}`);
});

const renewed = await step("refresh", async () => {
  const fresh = await oauth.performRefreshTokenGrant(tokens.refresh_token);
  const client = createClient({ baseUrl, accessToken: fresh.access_token, logger: silent });
  await client.whoami();
  return fresh;
});

await step("revoke ends the session", async () => {
  await oauth.revokeToken(renewed.access_token, "access_token");
  const client = createClient({ baseUrl, accessToken: renewed.access_token, logger: silent });
  let refused;
  try {
    await client.whoami();
  } catch (err) {
    refused = err;
  }
  check(refused?.errcode === "M_UNKNOWN_TOKEN", `after revocation: ${refused?.errcode ?? "still valid"}`);
});

await step("device authorization grant", async () => {
  const device = new OAuth2(metadata, { clientId }, silent);
  const session = await device.startDeviceAuthorizationGrant();
  const page = await browser.page(session.verification_uri_complete);
  check(page.html.includes(session.user_code), "the device page shows the code");
  const done = await browser.post("/oauth2/device", {
    csrf: page.csrf, user_code: session.user_code, decision: "allow",
  });
  check(done.status === 200, `approve: ${done.status}`);
  const granted = await device.waitForDeviceAuthorizationGrant(session);
  check(granted.access_token, `device grant: ${JSON.stringify(granted)}`);
  const me = await createClient({ baseUrl, accessToken: granted.access_token, logger: silent }).whoami();
  check(me.device_id === device.context.deviceId, `device ${me.device_id}`);
});
