package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/node"
	"github.com/spf13/cobra"
)

// natsCredentialCommand writes a service's bus credential, derived
// offline from the home's secret key.
func natsCredentialCommand(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nats-credential SERVICE",
		Short: "Write the bus credential a split-mode service connects to NATS with: " + strings.Join(auth.BusServices, ", "),
		Args:  cobra.ExactArgs(1),
	}
	var out string
	cmd.Flags().StringVar(&out, "out", "", "file to write (mode 0600); default: print to stdout")
	resolve := configFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := resolve()
		if err != nil {
			return err
		}
		cred, err := node.BusCredential(cfg, args[0])
		if err != nil {
			return err
		}
		line := cred.Encode() + "\n"
		if out == "" {
			_, err := io.WriteString(stdout, line)
			return err
		}
		if err := writeSecretFile(out, []byte(line)); err != nil {
			return homemesh.Invalid("out", "%v", err)
		}
		fmt.Fprintf(stdout, "%s: bus credential of %s written to %s\n", cred.Home, cred.Service, out)
		return nil
	}
	return cmd
}

// natsConfigCommand prints the authorization block an external nats-server
// needs to admit the home's services.
func natsConfigCommand(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nats-config",
		Short: "Print the nats-server authorization block (auth callout) for an external NATS",
		Args:  cobra.NoArgs,
	}
	resolve := configFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := resolve()
		if err != nil {
			return err
		}
		text, err := node.NATSServerConfig(cfg)
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, text)
		return err
	}
	return cmd
}

// writeSecretFile creates path with mode 0600, refusing to replace a file
// that exists, so a credential is never silently overwritten.
func writeSecretFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
