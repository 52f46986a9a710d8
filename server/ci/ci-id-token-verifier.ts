import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWTPayload } from "jose";
import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { checkRequirements, ownerOf } from "./claim-rules.js";
import type { CiIssuerConfig } from "./ci-issuer-settings.js";

/** What a verified ID token says about the job. */
export interface VerifiedCiJob {
  readonly issuer: CiIssuerConfig;
  /** The Warren user the issuer's owner template names. */
  readonly owner: string;
  readonly project?: string;
  readonly job?: string;
  readonly jobUrl?: string;
  readonly claims: JWTPayload;
}

export interface CiIdTokenVerifierOptions {
  readonly issuers: readonly CiIssuerConfig[];
  /** The audience of issuers that name none: the server's public URL (known once it listens). */
  readonly defaultAudience: () => string;
  readonly log: Logger;
  /** Seconds of clock difference tolerated on exp and nbf. */
  readonly clockToleranceSeconds?: number;
  /** How soon after a JWKS fetch an unknown key id may fetch it again (key rotation). */
  readonly jwksCooldownMs?: number;
  readonly now?: () => number;
}

type KeySet = ReturnType<typeof createRemoteJWKSet>;

const DISCOVERY_TIMEOUT_MS = 5000;
/** Signatures CI systems use; "none" and HMAC never. */
const ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];

/**
 * Verifies CI OIDC ID tokens (GitLab `id_tokens`, GitHub Actions' ACTIONS_ID_TOKEN_REQUEST_URL)
 * against the issuers of WARREN_CI_ISSUERS: the issuer's discovery document gives its JWKS,
 * fetched again when a token names a key id it does not hold (rotation); then `iss`, `aud`,
 * `exp` and `nbf` (with a small clock tolerance), the `require` globs and the owner template.
 * Every refusal is unauthenticated or permission_denied with one line that says what is wrong.
 */
export class CiIdTokenVerifier {
  readonly #options: CiIdTokenVerifierOptions;
  readonly #keySets = new Map<string, Promise<KeySet>>();

  constructor(options: CiIdTokenVerifierOptions) {
    this.#options = options;
  }

  get configured(): boolean {
    return this.#options.issuers.length > 0;
  }

  async verify(token: string): Promise<VerifiedCiJob> {
    let iss: string | undefined;
    let kid: string | undefined;
    try {
      iss = decodeJwt(token).iss;
      kid = decodeProtectedHeader(token).kid;
    } catch {
      throw refused("not an enrollment token (wen_...) or an ID token (JWT)");
    }
    const issuer = this.#options.issuers.find((i) => i.issuer === iss?.replace(/\/$/, ""));
    if (!issuer) {
      throw refused(`the ID token's issuer ${iss ? `"${iss.slice(0, 200)}"` : "(none)"} is not trusted by this server (WARREN_CI_ISSUERS)`);
    }
    const audience = issuer.audience ?? this.#options.defaultAudience();
    let claims: JWTPayload;
    try {
      const keys = await this.#keySet(issuer.issuer);
      const now = this.#options.now?.();
      ({ payload: claims } = await jwtVerify(token, keys, {
        issuer: iss!,
        audience,
        algorithms: ALGORITHMS,
        clockTolerance: this.#options.clockToleranceSeconds ?? 30,
        requiredClaims: ["exp"],
        ...(now !== undefined ? { currentDate: new Date(now) } : {}),
      }));
    } catch (err) {
      throw this.#explain(err, issuer.issuer, audience, token, kid);
    }
    checkRequirements(issuer.require, claims);
    const owner = ownerOf(issuer.owner, claims);
    return { issuer, owner, claims, ...jobOf(issuer.issuer, claims) };
  }

  #keySet(issuer: string): Promise<KeySet> {
    let keys = this.#keySets.get(issuer);
    if (!keys) {
      keys = this.#discover(issuer);
      this.#keySets.set(issuer, keys);
      // A failed discovery is tried again by the next token.
      keys.catch(() => this.#keySets.delete(issuer));
    }
    return keys;
  }

  async #discover(issuer: string): Promise<KeySet> {
    const url = `${issuer}/.well-known/openid-configuration`;
    let doc: { issuer?: unknown; jwks_uri?: unknown };
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS), redirect: "error" });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      doc = (await res.json()) as typeof doc;
    } catch (err) {
      this.#options.log.warn({ issuer, err: (err as Error).message }, "CI issuer discovery failed");
      throw new WarrenError(ErrorCode.Unavailable, `could not read ${url}: ${(err as Error).message}; try again`);
    }
    if (typeof doc.jwks_uri !== "string" || String(doc.issuer).replace(/\/$/, "") !== issuer) {
      throw new WarrenError(ErrorCode.Unavailable, `${url} is not the discovery document of ${issuer} (issuer or jwks_uri wrong)`);
    }
    this.#options.log.info({ issuer, jwks: doc.jwks_uri }, "CI issuer discovered");
    return createRemoteJWKSet(new URL(doc.jwks_uri), {
      timeoutDuration: DISCOVERY_TIMEOUT_MS,
      cooldownDuration: this.#options.jwksCooldownMs ?? 2000,
      cacheMaxAge: 10 * 60_000,
    });
  }

  #explain(err: unknown, issuer: string, audience: string, token: string, kid: string | undefined): WarrenError {
    if (err instanceof WarrenError) return err;
    if (err instanceof errors.JWTExpired) {
      const exp = decodeJwt(token).exp;
      return refused(`the ID token expired${exp ? ` at ${new Date(exp * 1000).toISOString()}` : ""}; a job's ID token is valid for the job only`);
    }
    if (err instanceof errors.JWTClaimValidationFailed) {
      if (err.claim === "aud") {
        const aud = decodeJwt(token).aud;
        return refused(`the ID token's audience is ${JSON.stringify(aud ?? null)}, not "${audience}" (ask the CI system for an ID token with that aud)`);
      }
      if (err.claim === "nbf") return refused("the ID token is not valid yet (nbf is in the future: check the clocks)");
      return refused(`the ID token's ${err.claim} claim is wrong: ${err.message}`);
    }
    if (err instanceof errors.JWKSNoMatchingKey) {
      return refused(`the ID token is signed with a key${kid ? ` (kid "${kid.slice(0, 80)}")` : ""} that ${issuer} does not publish (rotated out, or not its key)`);
    }
    if (err instanceof errors.JWSSignatureVerificationFailed) return refused(`the ID token's signature does not verify with ${issuer}'s keys`);
    if (err instanceof errors.JOSEAlgNotAllowed) return refused(`the ID token's signature algorithm is not accepted (use one of ${ALGORITHMS.join(", ")})`);
    if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || (err instanceof TypeError && /fetch/i.test(err.message))) {
      return new WarrenError(ErrorCode.Unavailable, `could not fetch the keys of ${issuer}; try again`);
    }
    if (err instanceof errors.JOSEError) return refused(`not a valid ID token: ${err.message}`);
    this.#options.log.warn({ issuer, err: (err as Error).message }, "CI ID token verification failed unexpectedly");
    return new WarrenError(ErrorCode.Unavailable, `could not verify the ID token with ${issuer}: ${(err as Error).message}`);
  }
}

function refused(message: string): WarrenError {
  return new WarrenError(ErrorCode.Unauthenticated, message);
}

function text(value: unknown): string | undefined {
  return typeof value === "string" || typeof value === "number" ? String(value) : undefined;
}

/** Project, job and a link to it from GitLab's or GitHub's claims (others: what fits). */
function jobOf(issuer: string, claims: JWTPayload): { project?: string; job?: string; jobUrl?: string } {
  const gitlabProject = text(claims["project_path"]);
  if (gitlabProject) {
    const job = text(claims["job_id"]);
    return { project: gitlabProject, ...(job ? { job, jobUrl: `${issuer}/${gitlabProject}/-/jobs/${job}` } : {}) };
  }
  const repository = text(claims["repository"]);
  const runId = text(claims["run_id"]);
  if (repository) {
    const attempt = text(claims["run_attempt"]);
    const server = issuer === "https://token.actions.githubusercontent.com" ? "https://github.com" : undefined;
    return {
      project: repository,
      ...(runId ? { job: attempt ? `${runId}/${attempt}` : runId } : {}),
      ...(runId && server ? { jobUrl: `${server}/${repository}/actions/runs/${runId}` } : {}),
    };
  }
  const sub = text(claims.sub);
  return sub ? { job: sub } : {};
}
