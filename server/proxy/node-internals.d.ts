// Node's own HTTP/1.1 parser (llhttp), exported by its http module's internal `_http_common`.
// Typed here for server/proxy/http-message-parser.ts, its only user.
declare module "_http_common" {
  export const methods: readonly string[];
  export class HTTPParser {
    static readonly REQUEST: number;
    static readonly RESPONSE: number;
    static readonly kOnMessageBegin: number;
    static readonly kOnHeaders: number;
    static readonly kOnHeadersComplete: number;
    static readonly kOnBody: number;
    static readonly kOnMessageComplete: number;
    static readonly kOnExecute: number;
    static readonly kOnTimeout: number;
    static readonly kLenientNone: number;
    initialize(type: number, resource: object, maxHeaderSize?: number, lenient?: number): void;
    execute(data: Buffer): number | (Error & { code?: string; reason?: string; bytesParsed?: number });
    finish(): number | (Error & { code?: string }) | undefined;
    close(): void;
    free(): void;
    remove(): void;
    pause(): void;
    resume(): void;
    [key: number]: unknown;
  }
}
