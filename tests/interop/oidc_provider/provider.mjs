// panva/oidc-provider on loopback as the OpenID Provider the review's sign-in is tested against
// (tests/browser/test_review_oidc.py). Configured from one JSON argument:
//   {"port": 0, "client": {"client_id", "jwks": {public keys}, "redirect_uri",
//    "post_logout_redirect_uri"}, "accounts": {"<login>": {claims}}}
// Prints "ready <issuer>" on stdout once it listens. Its own login form (devInteractions)
// takes any password for a login in "accounts"; consent is given for our one client, as an
// organisation's provider does for its own applications (HelseID has no consent step either).
import http from "node:http";
import { generateKeyPairSync } from "node:crypto";
import Provider from "oidc-provider";

const config = JSON.parse(process.argv[2]);
const server = http.createServer();
await new Promise((resolve) => server.listen(config.port ?? 0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const signing = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: config.client.client_id,
      token_endpoint_auth_method: "private_key_jwt",
      token_endpoint_auth_signing_alg: "RS256",
      jwks: config.client.jwks,
      redirect_uris: [config.client.redirect_uri],
      post_logout_redirect_uris: [config.client.post_logout_redirect_uri],
      response_types: ["code"],
      grant_types: ["authorization_code"],
      id_token_signed_response_alg: "RS256",
    },
  ],
  jwks: { keys: [{ ...signing, kid: "op-signing-1", use: "sig", alg: "RS256" }] },
  cookies: { keys: ["register-intake-test-provider"] },
  claims: { openid: ["sub"], profile: ["name"], roles: ["roles"], "helseid://scopes/identity/pid": ["helseid://claims/identity/pid"] },
  scopes: ["openid", "profile", "roles", "helseid://scopes/identity/pid"],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  ttl: { IdToken: 3600, AccessToken: 600, Session: 3600, Grant: 3600, Interaction: 600 },
  async findAccount(ctx, id) {
    const claims = config.accounts[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(ctx.oidc.params.scope);
    await grant.save();
    return grant;
  },
});
provider.on("server_error", (ctx, err) => console.error("server_error", err));
server.on("request", provider.callback());
console.log(`ready ${issuer}`);
