import { ErrorCode, WarrenError } from "../shared/errors.js";

/**
 * One end of a real dependency cycle in the composition root (A needs B, B calls back into A):
 * the part built first holds this, the root attaches the other once it exists. Reading it
 * before that is a wiring mistake and says which part and where it is attached.
 */
export class LateBinding<T> {
  readonly #what: string;
  readonly #attachedBy: string;
  #value: T | undefined;

  /** `what`: the part, for the error; `attachedBy`: where the root attaches it. */
  constructor(what: string, attachedBy: string) {
    this.#what = what;
    this.#attachedBy = attachedBy;
  }

  get attached(): boolean {
    return this.#value !== undefined;
  }

  attach(value: T): void {
    if (this.#value !== undefined) throw new WarrenError(ErrorCode.Internal, `${this.#what} is attached twice (${this.#attachedBy})`);
    this.#value = value;
  }

  get(): T {
    if (this.#value === undefined) {
      throw new WarrenError(ErrorCode.Internal, `${this.#what} was used before it was attached: build it and call ${this.#attachedBy} first`);
    }
    return this.#value;
  }
}
