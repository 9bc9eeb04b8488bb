package cli

import (
	"fmt"
	"io"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/node"
	"github.com/spf13/cobra"
)

func keysCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the home's keys"}
	rotate := &cobra.Command{
		Use:   "rotate-master --data DIR --new-key-file FILE",
		Short: "Re-seal every secret at rest with a new master (secret) key",
		Long: `rotate-master makes a new 32-byte key (raw, hex or base64; e.g. from
"openssl rand -hex 32") the key that seals the home's secrets at rest: the
token signing keys, the home CA key, the onboarding code and TOTP secrets.
It re-seals every record and, when the old key is DATA/secret.key, replaces
that file. The hub must be stopped; the old key is found as the hub finds it
(--secret-key-file, HOMEMESH_SECRET_KEY or DATA/secret.key). If the
rotation is interrupted, run it again with the same flags.`,
		Args: cobra.NoArgs,
	}
	resolve := configFlags(rotate)
	var newKeyFile string
	rotate.Flags().StringVar(&newKeyFile, "new-key-file", "", "file holding the new 32-byte key")
	rotate.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := resolve()
		if err != nil {
			return err
		}
		if newKeyFile == "" {
			return homemesh.Invalid("new-key-file", "is required")
		}
		off, err := node.OpenOffline(cfg, newLogger(stderr, cfg.LogLevel))
		if err != nil {
			return err
		}
		defer off.Close()
		rot, err := off.RotateSecretKey(cmd.Context(), newKeyFile)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "homemesh: home %s: master key %s replaced by %s\n", off.HomeID(), rot.OldKeyID, rot.KeyID)
		fmt.Fprintf(stdout, "  re-sealed %d records:\n", len(rot.Resealed))
		for _, r := range rot.Resealed {
			fmt.Fprintf(stdout, "    %s\n", r)
		}
		fmt.Fprintf(stdout, "  already sealed with the new key: %d\n", rot.Current)
		if rot.KeyFile != "" {
			fmt.Fprintf(stdout, "  %s now holds the new key; keep a copy with your backups.\n", rot.KeyFile)
		} else {
			fmt.Fprintln(stdout, "  Start every auth process with the new key from now on (--secret-key-file or HOMEMESH_SECRET_KEY).")
		}
		fmt.Fprintln(stdout, "  The old key now only opens backups taken before this rotation.")
		return nil
	}
	cmd.AddCommand(rotate)
	return cmd
}
