import { describe, expect, it } from "vitest";
import { WarrenError } from "../../shared/errors.js";
import { checkRequirements, globMatches, ownerOf, parseOwnerTemplate } from "./claim-rules.js";
import { parseCiIssuers } from "./ci-issuer-settings.js";

describe("WARREN_CI_ISSUERS", () => {
  it("reads a JSON list (the variable's form) with defaults filled in", () => {
    const [gitlab, github] = parseCiIssuers(
      JSON.stringify([
        { issuer: "https://gitlab.example.com/", owner: "{user_login}", require: { project_path: "group/*", ref_protected: true }, maxTtl: "2h" },
        { issuer: "https://token.actions.githubusercontent.com", audience: "https://ws.example.com", owner: "gh-{actor}", createUsers: true },
      ]),
    );
    expect(gitlab).toMatchObject({ issuer: "https://gitlab.example.com", maxTtlMs: 7_200_000, createUsers: false, require: [{ claim: "project_path", globs: ["group/*"] }, { claim: "ref_protected", globs: ["true"] }] });
    expect(gitlab!.audience).toBeUndefined();
    expect(github).toMatchObject({ audience: "https://ws.example.com", maxTtlMs: 6 * 3_600_000, createUsers: true, require: [] });
  });

  it("names the entry and field that is wrong", () => {
    expect(() => parseCiIssuers('{"issuer": "x"}')).toThrow(/must be a list of issuers/);
    expect(() => parseCiIssuers('[{"owner": "{actor}"}]')).toThrow(/issuer 1: issuer is required/);
    expect(() => parseCiIssuers('[{"issuer": "http://gitlab.example.com", "owner": "{actor}"}]')).toThrow(/issuer 1: issuer must be an https URL/);
    expect(() => parseCiIssuers('[{"issuer": "https://a.example", "owner": "actor"}]')).toThrow(/issuer 1: owner: "actor" names no claim/);
    expect(() => parseCiIssuers('[{"issuer": "https://a.example", "owner": "{actor}", "maxTtl": "9d"}]')).toThrow(/maxTtl 9d is out of range 1m-7d/);
    expect(() => parseCiIssuers('[{"issuer": "https://a.example", "owner": "{actor}", "audiences": "x"}]')).toThrow(/unknown field "audiences"/);
    expect(() => parseCiIssuers('[{"issuer": "https://a.example", "owner": "{a}"}, {"issuer": "https://a.example/", "owner": "{b}"}]')).toThrow(/issuer 2: https:\/\/a.example is listed twice/);
  });
});

describe("claim rules", () => {
  it("globs: * matches any run of characters, everything else is literal", () => {
    expect(globMatches("group/*", "group/sub/app")).toBe(true);
    expect(globMatches("group/*", "groupie/app")).toBe(false);
    expect(globMatches("a.b", "axb")).toBe(false);
    expect(globMatches("refs/heads/release-*", "refs/heads/release-1.2")).toBe(true);
  });

  it("the owner template fills in claims, lowercased; a missing claim is refused by name", () => {
    expect(ownerOf(parseOwnerTemplate("gh-{actor}"), { actor: "OctoCat" })).toBe("gh-octocat");
    expect(() => ownerOf(parseOwnerTemplate("{user_login}"), {})).toThrow(/no "user_login" claim/);
  });

  it("requirements: every claim must match one of its globs; numbers and booleans compare as text", () => {
    checkRequirements([{ claim: "ref_protected", globs: ["true"] }, { claim: "project_id", globs: ["20", "21"] }], { ref_protected: true, project_id: 21 });
    const refusal = (() => {
      try {
        checkRequirements([{ claim: "project_path", globs: ["group/*"] }], {});
      } catch (err) {
        return err as WarrenError;
      }
      return undefined;
    })();
    expect(refusal?.message).toBe('the ID token\'s claim project_path is missing, which does not match "group/*" (WARREN_CI_ISSUERS require)');
  });
});
