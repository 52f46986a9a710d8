import http from "node:http";
import { generateKeyPairSync } from "node:crypto";
import type { AddressInfo } from "node:net";
import Provider, { type Configuration, type KoaContextWithOIDC } from "oidc-provider";

export const OIDC_CLIENT_ID = "warren";
export const OIDC_CLIENT_SECRET = "warren-test-client-secret-0123456789";

/** Who may sign in at the test provider (devInteractions: any password), and their groups. */
export const OIDC_ACCOUNTS: Record<string, readonly string[]> = {
  alice: ["developers"],
  bob: ["developers"],
  carol: ["contractors"],
  root: ["developers", "warren-admins"],
};

/**
 * A real OpenID provider (oidc-provider with its own login form) on 127.0.0.1. It listens
 * before Warren starts (Warren needs the issuer URL); configure() builds the provider once
 * Warren's redirect URI is known, and again with other keys or a skewed clock for the
 * failure tests (same issuer, so Warren cannot tell it is another instance).
 */
/**
 * A Warren server's settings for single sign-on through this provider: members of "developers"
 * may sign in. `extra` adds or overrides settings (admin groups, the secret key...).
 */
export function oidcServerEnv(provider: TestOidcProvider, extra: Record<string, string> = {}): Record<string, string> {
  return {
    WARREN_OIDC_ISSUER: provider.issuer,
    WARREN_OIDC_CLIENT_ID: OIDC_CLIENT_ID,
    WARREN_OIDC_CLIENT_SECRET: OIDC_CLIENT_SECRET,
    WARREN_OIDC_ALLOWED_GROUPS: "developers",
    ...extra,
  };
}

export class TestOidcProvider {
  readonly #server: http.Server;
  #provider: Provider | undefined;
  #port = 0;

  constructor() {
    this.#server = http.createServer((req, res) => {
      if (!this.#provider) {
        res.writeHead(503).end("provider not configured yet");
        return;
      }
      this.#provider.callback()(req, res);
    });
  }

  get issuer(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    this.#port = (this.#server.address() as AddressInfo).port;
  }

  /**
   * (Re)builds the provider. `signingKey` defaults to a fresh key with kid "test-key";
   * `clockSkewSeconds` shifts the clock the token endpoint signs with (an expired ID token).
   */
  configure(options: { redirectUri: string; kid?: string; clockSkewSeconds?: number }): void {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const jwk = { ...privateKey.export({ format: "jwk" }), kid: options.kid ?? "test-key", use: "sig", alg: "RS256" };
    const configuration: Configuration = {
      clients: [
        {
          client_id: OIDC_CLIENT_ID,
          client_secret: OIDC_CLIENT_SECRET,
          redirect_uris: [options.redirectUri],
          grant_types: ["authorization_code"],
          response_types: ["code"],
        },
      ],
      jwks: { keys: [jwk as never] },
      cookies: { keys: ["test-provider-cookie-key-0123456789"] },
      claims: { openid: ["sub"], profile: ["preferred_username", "name", "groups"], email: ["email"] },
      features: { devInteractions: { enabled: true } },
      pkce: { required: () => true },
      async findAccount(_ctx: KoaContextWithOIDC, id: string) {
        return {
          accountId: id,
          async claims() {
            return { sub: id, preferred_username: id, name: id, email: `${id}@example.com`, groups: [...(OIDC_ACCOUNTS[id] ?? [])] };
          },
        };
      },
      // First-party client: consent is implied (no extra screen in the tests).
      async loadExistingGrant(ctx: KoaContextWithOIDC) {
        const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client!.clientId, accountId: ctx.oidc.session!.accountId! });
        grant.addOIDCScope("openid profile email");
        await grant.save();
        return grant;
      },
    };
    const provider = new Provider(this.issuer, configuration);
    const skew = options.clockSkewSeconds;
    if (skew) {
      // Only while the token endpoint signs: a provider whose clock is that far off.
      provider.use(async (ctx, next) => {
        if (ctx.path !== "/token") return next();
        const realNow = Date.now;
        Date.now = () => realNow() + skew * 1000;
        try {
          await next();
        } finally {
          Date.now = realNow;
        }
      });
    }
    this.#provider = provider;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
