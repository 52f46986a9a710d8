/** Files the server keeps in WARREN_DATA_DIR beside the embedded store. */

/** The SSH front door's generated host key (when WARREN_SSH_HOST_KEY is not set). */
export const GENERATED_HOST_KEY_FILE = "ssh_host_ed25519_key";
