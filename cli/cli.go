// Package cli is homemesh's command tree: up (the hub), serve (split-mode
// services), sim (simulated devices), mesh sim (the mesh simulator), bench
// (load generators), keys rotate-master (master key rotation), audit (the
// audit log), user (account maintenance) and config check. Each command
// parses flags into the typed configuration and hands over to the packages
// that do the work; no logic lives here beyond that.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/config"
	"github.com/spf13/cobra"
)

// Main runs the command line args and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "homemesh",
		Short:         "A secure, scalable smart-home platform",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(upCommand(stdout, stderr), serveCommand(stdout, stderr), configCommand(stdout),
		simCommand(stderr), benchCommand(stdout, stderr), keysCommand(stdout, stderr), auditCommand(stdout, stderr),
		userCommand(stdout, stderr), meshCommand(stdout, stderr))
	root.AddCommand(natsCredentialCommand(stdout), natsConfigCommand(stdout))
	root.AddCommand(agentCommand(stdout, stderr))
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "homemesh:", describe(err))
		return 1
	}
	return 0
}

// describe renders an error for a person at a terminal: the field, if any,
// then the message.
func describe(err error) string {
	var he *homemesh.Error
	if errors.As(err, &he) && he.Kind == homemesh.KindInvalid && he.Field != "" && err == error(he) {
		return fmt.Sprintf("%s: %s", he.Field, he.Message)
	}
	return err.Error()
}

// configFlags binds every configuration field to cmd's flags and returns a
// function that resolves the layers: flags > environment > file > defaults.
func configFlags(cmd *cobra.Command) func() (config.Config, error) {
	flagged := config.Default()
	var file string
	cmd.Flags().StringVar(&file, "config", os.Getenv("HOMEMESH_CONFIG"), "configuration file (YAML or JSON)")
	for _, f := range flagged.Fields() {
		switch {
		case f.BoolPtr() != nil:
			cmd.Flags().BoolVar(f.BoolPtr(), f.Name, *f.BoolPtr(), f.Usage+" ["+f.Env+"]")
		case f.StringPtr() != nil:
			cmd.Flags().StringVar(f.StringPtr(), f.Name, *f.StringPtr(), f.Usage+" ["+f.Env+"]")
		default: // a list, given as comma-separated text and applied by Set
			cmd.Flags().String(f.Name, f.Value(), f.Usage+" ["+f.Env+"]")
		}
	}
	return func() (config.Config, error) {
		cfg := config.Default()
		if file != "" {
			if err := cfg.LoadFile(file); err != nil {
				return cfg, err
			}
		}
		if err := cfg.LoadEnv(os.LookupEnv); err != nil {
			return cfg, err
		}
		for _, f := range cfg.Fields() {
			fl := cmd.Flags().Lookup(f.Name)
			if fl != nil && fl.Changed {
				if err := f.Set(fl.Value.String()); err != nil {
					return cfg, err
				}
			}
		}
		return cfg, cfg.Validate()
	}
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func configCommand(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with configuration files"}
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration file and exit",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := config.Default()
			if err := cfg.LoadFile(args[0]); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: ok\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(check)
	return cmd
}
