import { ErrorCode, WarrenError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import type { Authenticator } from "../auth/authenticator.js";
import type { Principal } from "../domain/principal.js";
import { parseToken, TokenKind } from "../domain/tokens.js";
import type { EnrollmentTokens } from "../control/enrollment-tokens.js";
import type { WorkspaceManager } from "../control/workspace-manager.js";
import { workspaceIdOf, type CiJobRecord, type PortRecord, type WorkspaceRecord } from "../domain/records.js";
import type { CiIdTokenVerifier } from "./ci-id-token-verifier.js";

export interface EnrollInput {
  readonly name: string;
  readonly ports: readonly PortRecord[];
  /** Wanted time to live; the credential's longest when 0 or more. */
  readonly ttlMs: number;
  /** Labels a job with an enrollment token gives about itself (an ID token's claims win). */
  readonly project: string;
  readonly job: string;
  readonly jobUrl: string;
  readonly sshPort: number;
  readonly sshUser: string;
}

export interface CiEnrollmentOptions {
  readonly verifier: CiIdTokenVerifier;
  readonly enrollmentTokens: EnrollmentTokens;
  readonly workspaces: WorkspaceManager;
  readonly authenticator: Authenticator;
  /** Creates a user an issuer entry with createUsers names (single sign-on's provisioning). */
  readonly provisionUser: (name: string) => Promise<unknown>;
  readonly userExists: (name: string) => Promise<boolean>;
  readonly log: Logger;
}

/** What a credential allows: whose workspace, for how long at most, which ports. */
interface Grant {
  readonly owner: string;
  readonly credentialId: string;
  readonly maxTtlMs: number;
  readonly allowedPorts?: readonly number[];
  readonly ci: CiJobRecord;
}

const MAX_LABEL_CHARS = 200;

/**
 * A CI job creates, holds and ends its own workspace (`warren-agent ci`). Creating takes the
 * job's OIDC ID token or an enrollment token; holding and ending take the workspace's own
 * agent token, so a job can touch no workspace but its own.
 */
export class CiEnrollment {
  readonly #options: CiEnrollmentOptions;

  constructor(options: CiEnrollmentOptions) {
    this.#options = options;
  }

  async enroll(credential: string | undefined, input: EnrollInput): Promise<{ workspace: WorkspaceRecord; agentToken: string }> {
    if (!credential) {
      throw new WarrenError(ErrorCode.Unauthenticated, "missing credential: the job's CI ID token or an enrollment token (authorization: Bearer <token>)");
    }
    const grant = await this.#grantOf(credential, input);
    const ttlMs = input.ttlMs > 0 ? Math.min(input.ttlMs, grant.maxTtlMs) : grant.maxTtlMs;
    if (grant.allowedPorts) {
      const refused = input.ports.find((p) => !grant.allowedPorts!.includes(p.port));
      if (refused) {
        throw new WarrenError(ErrorCode.PermissionDenied, `port ${refused.port}: this enrollment token allows only ports ${grant.allowedPorts.join(", ")}`);
      }
    }
    const principal: Principal = { kind: "user", user: grant.owner, tokenId: grant.credentialId };
    const created = await this.#options.workspaces.create(principal, {
      name: input.name,
      ports: input.ports,
      ttlMs,
      agentTokenTtlMs: ttlMs,
      sshPort: input.sshPort,
      sshUser: input.sshUser,
      ci: grant.ci,
    });
    this.#options.log.info(
      { workspace: input.name, owner: grant.owner, issuer: grant.ci.issuer, project: grant.ci.project, job: grant.ci.job, ttlMs },
      "CI job enrolled a workspace",
    );
    return created;
  }

  async hold(agentToken: string | undefined, holdMs: number, exitCode: number): Promise<WorkspaceRecord> {
    const { workspace } = await this.#options.authenticator.authenticateAgent(agentToken);
    if (!Number.isFinite(holdMs) || holdMs < 1000) throw new WarrenError(ErrorCode.InvalidArgument, "holdSeconds: at least 1");
    return this.#options.workspaces.holdCiWorkspace(workspace.name, workspaceIdOf(workspace), holdMs, exitCode);
  }

  async finish(agentToken: string | undefined): Promise<void> {
    const { workspace } = await this.#options.authenticator.authenticateAgent(agentToken);
    await this.#options.workspaces.finishCiWorkspace(workspace.name, workspaceIdOf(workspace), "its CI job ended");
  }

  async #grantOf(credential: string, input: EnrollInput): Promise<Grant> {
    const parsed = parseToken(credential);
    if (parsed?.kind === TokenKind.Enrollment || credential.startsWith("wen_")) {
      const record = await this.#options.enrollmentTokens.authenticate(credential);
      return {
        owner: record.subject,
        credentialId: record.id,
        maxTtlMs: record.maxWorkspaceTtlMs ?? 3_600_000,
        ...(record.allowedPorts ? { allowedPorts: record.allowedPorts } : {}),
        ci: {
          issuer: `enrollment token ${record.id}`,
          enrollmentTokenId: record.id,
          ...label("project", input.project),
          ...label("job", input.job),
          ...(isHttpUrl(input.jobUrl) ? label("jobUrl", input.jobUrl) : {}),
        },
      };
    }
    if (parsed) throw new WarrenError(ErrorCode.Unauthenticated, `a ${parsed.kind}_ token cannot enroll a workspace: use the job's CI ID token or an enrollment token (wen_...)`);
    if (!this.#options.verifier.configured) {
      throw new WarrenError(ErrorCode.Unauthenticated, "this server trusts no CI issuer (WARREN_CI_ISSUERS is empty): use an enrollment token (wen_...)");
    }
    const job = await this.#options.verifier.verify(credential);
    if (!(await this.#options.userExists(job.owner))) {
      if (!job.issuer.createUsers) {
        throw new WarrenError(
          ErrorCode.PermissionDenied,
          `the ID token names owner "${job.owner.slice(0, 80)}", who is not a Warren user (create the user, or set createUsers for ${job.issuer.issuer})`,
        );
      }
      await this.#options.provisionUser(job.owner);
    }
    return {
      owner: job.owner,
      credentialId: `ci:${job.issuer.issuer}`,
      maxTtlMs: job.issuer.maxTtlMs,
      ci: { issuer: job.issuer.issuer, ...label("project", job.project ?? ""), ...label("job", job.job ?? ""), ...label("jobUrl", job.jobUrl ?? "") },
    };
  }
}

function label<K extends string>(key: K, value: string): Partial<Record<K, string>> {
  const v = value.trim().slice(0, MAX_LABEL_CHARS);
  return v ? ({ [key]: v } as Record<K, string>) : {};
}

function isHttpUrl(value: string): boolean {
  return /^https?:\/\/\S+$/.test(value.trim());
}
