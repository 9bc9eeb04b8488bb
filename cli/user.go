package cli

import (
	"fmt"
	"io"

	"github.com/homemesh/homemesh/node"
	"github.com/spf13/cobra"
)

func userCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage the people of a home"}
	cmd.AddCommand(resetMFACommand(stdout, stderr))
	return cmd
}

// resetMFACommand is the way back in for a person who lost their
// authenticator app and their recovery codes, the owner above all: whoever
// can stop the hub and read its data directory may already do anything, so
// this grants nothing new.
func resetMFACommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reset-mfa USERNAME",
		Short: "Remove a user's TOTP and recovery codes so they can log in with their password and enrol again (stop the hub first)",
		Args:  cobra.ExactArgs(1),
	}
	resolve := configFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := resolve()
		if err != nil {
			return err
		}
		off, err := node.OpenOffline(cfg, newLogger(stderr, cfg.LogLevel))
		if err != nil {
			return err
		}
		defer off.Close()
		svc, err := off.Auth()
		if err != nil {
			return err
		}
		if err := svc.ResetMFA(cmd.Context(), args[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "MFA reset for %s in home %s: they can log in with their password alone and enrol again.\n",
			args[0], off.HomeID())
		return nil
	}
	return cmd
}
