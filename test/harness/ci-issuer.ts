import http from "node:http";
import { randomBytes } from "node:crypto";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose";
import { listen } from "./apps.js";

interface SigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
}

async function newKey(kid = randomBytes(6).toString("hex")): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" } };
}

export interface MintOptions {
  readonly aud?: string | string[];
  /** Seconds from now; negative: already expired. */
  readonly expiresIn?: number;
  readonly notBefore?: number;
  /** Sign with this key rather than the current one. */
  readonly key?: SigningKey;
  /** Put another key's kid in the header (a forged signature under a known kid). */
  readonly kid?: string;
  readonly iss?: string;
}

/**
 * A CI system's OIDC issuer, started by the test: its own RSA keys, a discovery document and a
 * JWKS at `{issuer}/.well-known/openid-configuration` and `{issuer}/jwks`, serving ID tokens
 * shaped like GitLab's (`id_tokens`) and GitHub Actions' (and GitHub's request endpoint,
 * ACTIONS_ID_TOKEN_REQUEST_URL). Keys rotate on demand.
 */
export class TestCiIssuer {
  readonly #server = http.createServer((req, res) => this.#handle(req, res));
  #port = 0;
  #keys: SigningKey[] = [];
  /** Requests the job's GitHub-shaped token endpoint must carry. */
  readonly requestToken = `gha-${randomBytes(8).toString("hex")}`;
  /** Claims the GitHub request endpoint puts in its tokens. */
  githubClaims: Record<string, unknown> = {};
  jwksFetches = 0;

  constructor(readonly path: string) {}

  async start(): Promise<this> {
    this.#keys = [await newKey()];
    this.#port = await listen(this.#server);
    return this;
  }

  get issuer(): string {
    return `http://127.0.0.1:${this.#port}${this.path}`;
  }

  /** The endpoint GitHub Actions gives jobs in ACTIONS_ID_TOKEN_REQUEST_URL. */
  get requestUrl(): string {
    return `${this.issuer}/actions-token?api-version=2.0`;
  }

  get currentKey(): SigningKey {
    return this.#keys[this.#keys.length - 1]!;
  }

  /** A key the issuer never published. */
  unpublishedKey(): Promise<SigningKey> {
    return newKey();
  }

  /** Publishes a new key and signs with it from now on; the old ones are dropped. */
  async rotate(): Promise<{ old: SigningKey; current: SigningKey }> {
    const old = this.currentKey;
    this.#keys = [await newKey()];
    return { old, current: this.currentKey };
  }

  async mint(claims: Record<string, unknown>, options: MintOptions = {}): Promise<string> {
    const key = options.key ?? this.currentKey;
    const now = Math.floor(Date.now() / 1000);
    let jwt = new SignJWT({ ...claims })
      .setProtectedHeader({ alg: "RS256", kid: options.kid ?? key.kid, typ: "JWT" })
      .setIssuer(options.iss ?? this.issuer)
      .setIssuedAt(now - 5)
      .setExpirationTime(now + (options.expiresIn ?? 300))
      .setJti(randomBytes(8).toString("hex"));
    if (options.aud !== undefined) jwt = jwt.setAudience(options.aud);
    if (options.notBefore !== undefined) jwt = jwt.setNotBefore(now + options.notBefore);
    return jwt.sign(key.privateKey);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://x");
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === `${this.path}/.well-known/openid-configuration`) {
      return json(200, { issuer: this.issuer, jwks_uri: `${this.issuer}/jwks`, id_token_signing_alg_values_supported: ["RS256"], response_types_supported: ["id_token"] });
    }
    if (url.pathname === `${this.path}/jwks`) {
      this.jwksFetches++;
      return json(200, { keys: this.#keys.map((k) => k.jwk) });
    }
    if (url.pathname === `${this.path}/actions-token`) {
      if (req.headers.authorization !== `bearer ${this.requestToken}`) return json(401, { message: "bad request token" });
      void this.mint(this.githubClaims, { aud: url.searchParams.get("audience") ?? undefined }).then((value) => json(200, { count: 1, value }));
      return;
    }
    json(404, { message: "not found" });
  }
}

/** Claims of a GitLab CI job's ID token (`id_tokens:` in .gitlab-ci.yml). */
export function gitlabClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sub: "project_path:group/app:ref_type:branch:ref:main",
    namespace_id: "72",
    namespace_path: "group",
    project_id: "20",
    project_path: "group/app",
    user_id: "5",
    user_login: "alice",
    user_email: "alice@example.com",
    pipeline_id: "574",
    pipeline_source: "push",
    job_id: "302",
    ref: "main",
    ref_type: "branch",
    ref_protected: "true",
    ...overrides,
  };
}

/** Claims of a GitHub Actions job's ID token. */
export function githubClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sub: "repo:octo-org/octo-repo:ref:refs/heads/main",
    actor: "Carol",
    actor_id: "12",
    repository: "octo-org/octo-repo",
    repository_owner: "octo-org",
    run_id: "5102",
    run_attempt: "1",
    ref: "refs/heads/main",
    workflow: "debug",
    event_name: "push",
    ...overrides,
  };
}
