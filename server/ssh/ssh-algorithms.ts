import type { Algorithms } from "ssh2";

/**
 * Algorithms offered on both sides of the relay: modern key exchange, AEAD and ETM ciphers
 * and MACs, nothing SHA-1. Diffie-Hellman group exchange is left out: ssh2 advertises it by
 * default but its server side does not implement it, so a client that picks it would hang.
 * The client's order picks the cipher (OpenSSH prefers ChaCha20-Poly1305); on the relay's own
 * leg to the workspace's sshd, ssh2 is the client and takes AES-GCM, which Node runs through
 * OpenSSL with AES-NI.
 */
export const SSH_ALGORITHMS: Algorithms = {
  kex: [
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
  ],
  cipher: ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr", "chacha20-poly1305@openssh.com"],
  hmac: ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512"],
  compress: ["none", "zlib@openssh.com"],
};

/** Host key algorithms the relay accepts from a workspace's sshd. */
export const WORKSPACE_HOST_KEY_ALGORITHMS = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "rsa-sha2-512",
  "rsa-sha2-256",
];
