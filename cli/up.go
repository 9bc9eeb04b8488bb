package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/homemesh/homemesh/node"
	"github.com/spf13/cobra"
)

func upCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the hub: every service in one process",
		Args:  cobra.NoArgs,
	}
	resolve := configFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := resolve()
		if err != nil {
			return err
		}
		log := newLogger(stderr, cfg.LogLevel)
		n, err := node.New(cfg, node.Options{CreateHome: true, Out: stdout}, log)
		if err != nil {
			return err
		}
		if err := n.Start(cmd.Context()); err != nil {
			return err
		}
		stopDemo, err := startDemo(cmd.Context(), cfg, n, log)
		if err != nil {
			return err
		}
		defer stopDemo()
		bannerWhenReady(cmd.Context(), stdout, cfg.Data, n)
		return n.Run(cmd.Context())
	}
	return cmd
}

func serveCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve SERVICE...",
		Short: "Run some services as their own process (split mode): " + strings.Join(node.Services, ", "),
		Args:  cobra.MinimumNArgs(1),
	}
	resolve := configFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := resolve()
		if err != nil {
			return err
		}
		log := newLogger(stderr, cfg.LogLevel)
		n, err := node.New(cfg, node.Options{Services: args, Out: stdout}, log)
		if err != nil {
			return err
		}
		if err := n.Start(cmd.Context()); err != nil {
			return err
		}
		bannerWhenReady(cmd.Context(), stdout, cfg.Data, n)
		return n.Run(cmd.Context())
	}
	return cmd
}

// bannerWhenReady prints the banner once every hosted service answers, so
// that whoever reads the API address can use it at once: services start
// serving only when Run runs, and a request in between would find no one.
func bannerWhenReady(ctx context.Context, w io.Writer, data string, n *node.Node) {
	go func() {
		select {
		case <-n.Ready():
			printBanner(w, data, n)
		case <-ctx.Done():
		}
	}()
}

// printBanner tells the person who started the process what they need:
// where to reach it and, on first start, the onboarding code.
func printBanner(w io.Writer, data string, n *node.Node) {
	fmt.Fprintf(w, "homemesh: home %s\n", n.Home().ID)
	if g := n.Gateway(); g != nil {
		fmt.Fprintf(w, "  API:   %s/api/v1\n", g.URL())
	}
	if b := n.Broker(); b != nil {
		if a := b.Addr("tcp"); a != nil {
			fmt.Fprintf(w, "  MQTT:  %s\n", a)
		}
		if a := b.Addr("tls"); a != nil {
			fmt.Fprintf(w, "  MQTTS: %s (certificate from the home CA)\n", a)
		}
	}
	if b := n.Border(); b != nil {
		fmt.Fprintf(w, "  Mesh:  %s (UDP; hub node %s)\n", b.Addr(), b.ID())
	}
	if u := n.NATSURL(); u != "" {
		fmt.Fprintf(w, "  NATS:  %s (TLS; each service connects with --nats-credential, see homemesh nats-credential)\n", u)
	}
	if a := n.Auth(); a != nil {
		if code := a.OnboardingCode(); code != "" {
			fmt.Fprintf(w, "  Onboarding code: %s\n", code)
			fmt.Fprintf(w, "  (also in %s; use it once with POST /api/v1/onboard to create the owner)\n",
				filepath.Join(data, "onboarding-code"))
		}
	}
}
