package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/agent"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/meshnode"
	"github.com/spf13/cobra"
)

func agentCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a device as a node of the home's mesh network",
		Long: `agent makes this machine a mesh device: pair it once with a setup code
from the hub (an owner or admin creates one: POST /api/v1/pairings), then
run it. Pairing stores the node's key and certificate in --state.`,
	}
	cmd.AddCommand(agentPairCommand(stdout), agentRunCommand(stdout, stderr))
	return cmd
}

// agentFlagNames maps the agent package's setting names to the flags that
// carry them, so errors name what the person typed.
var agentFlagNames = map[string]string{"ca_fingerprint": "ca-fingerprint", "mesh_key": "code", "mesh_role": "role"}

func flagError(err error) error {
	var he *homemesh.Error
	if errors.As(err, &he) && he.Kind == homemesh.KindInvalid {
		name, ok := agentFlagNames[he.Field]
		// The node's list settings name the entry ("peers[1]"); the flag
		// is repeated instead.
		for prefix, flag := range map[string]string{"peers[": "peer", "multicast[": "multicast"} {
			if strings.HasPrefix(he.Field, prefix) {
				name, ok = flag, true
			}
		}
		if ok {
			c := *he
			c.Field = name
			return &c
		}
	}
	return err
}

func agentPairCommand(stdout io.Writer) *cobra.Command {
	var (
		hub, code, caFile, fingerprint, state, role string
		tofu                                        bool
	)
	cmd := &cobra.Command{
		Use:   "pair --hub URL --code CODE --ca FILE --state DIR",
		Short: "Pair this device with the hub using a one-time setup code",
		Long: `pair generates the node's X25519 key, claims the setup code at the hub
and stores the node certificate, the home CA and the home's hubs in --state.

The setup code gives whoever presents it first a place in the home, so it
is sent only to a hub this command has authenticated. Give the hub's CA
(--ca, the hub's DATA/ca.crt) or its SHA-256 fingerprint (--ca-fingerprint,
as "openssl x509 -noout -fingerprint -sha256 -in DATA/ca.crt" prints it).
--tofu instead trusts the CA the hub presents and prints its fingerprint to
compare afterwards: anyone who can intercept the connection at that moment
could take the code. Plain http:// is accepted only for a hub on this
machine. --code - reads the code from standard input, which keeps it out of
the process list.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := parseAgentRole(role)
			if err != nil {
				return err
			}
			if code == "-" {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("read the setup code: %w", err)
				}
				code = strings.TrimSpace(line)
			}
			for _, req := range []struct{ flag, value string }{{"hub", hub}, {"code", code}, {"state", state}} {
				if req.value == "" {
					return homemesh.Invalid(req.flag, "is required")
				}
			}
			if strings.HasPrefix(hub, "https://") && caFile == "" && fingerprint == "" && !tofu {
				return homemesh.Invalid("ca", "the hub's CA is needed to send it the setup code safely: give --ca FILE (the hub's DATA/ca.crt) or --ca-fingerprint SHA256, or --tofu to trust what the hub presents")
			}
			var ca []byte
			if caFile != "" {
				if ca, err = os.ReadFile(caFile); err != nil {
					return homemesh.Invalid("ca", "%v", err)
				}
			}
			p, err := agent.Pair(cmd.Context(), agent.PairConfig{
				HubURL: hub, Code: code, Role: r, CA: ca, CAFingerprint: fingerprint,
				TrustOnFirstUse: tofu, StateDir: state, Out: stdout,
			})
			if err != nil {
				return flagError(err)
			}
			fmt.Fprintf(stdout, "paired: node %s (%s) of home %s, certificate valid until %s\n",
				p.NodeID, p.Role, p.Home, p.NotAfter.Format(time.DateOnly))
			if len(p.Hubs) == 0 {
				fmt.Fprintln(stdout, "the home told of no hub yet: give the hub's mesh address with --peer when you run")
			}
			for _, h := range p.Hubs {
				fmt.Fprintf(stdout, "  hub %s at %s\n", h.NodeID, strings.Join(h.Addresses, ", "))
			}
			fmt.Fprintf(stdout, "run it with: homemesh agent run --state %s --simulate temperature,switch,door\n", state)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&hub, "hub", "", "the hub's API, https://host:port (required)")
	f.StringVar(&code, "code", "", `the one-time setup code, or "-" to read it from standard input (required)`)
	f.StringVar(&caFile, "ca", "", "the home CA's PEM file (the hub's DATA/ca.crt): trust only a hub it certified")
	f.StringVar(&fingerprint, "ca-fingerprint", "", "the home CA's SHA-256 fingerprint instead of --ca")
	f.BoolVar(&tofu, "tofu", false, "trust the CA the hub presents (prints its fingerprint); the code can then be intercepted")
	f.StringVar(&state, "state", "", "directory for the node's key, certificate and pairing (required)")
	f.StringVar(&role, "role", "router", "router (mains-powered, forwards for others) or leaf (battery, one parent)")
	return cmd
}

func parseAgentRole(s string) (link.Role, error) {
	switch s {
	case "router":
		return link.RoleRouter, nil
	case "leaf":
		return link.RoleLeaf, nil
	}
	return 0, homemesh.Invalid("role", "must be router or leaf, not %q", s)
}

func agentRunCommand(stdout, stderr io.Writer) *cobra.Command {
	var (
		state, listen, name, logLevel string
		peers, multicast, simulate    []string
		hello, poll, telemetry        time.Duration
		seed                          uint64
	)
	cmd := &cobra.Command{
		Use:   "run --state DIR [--listen ADDR] [--peer ADDR]... [--simulate temperature,switch,door]",
		Short: "Run the paired device as a mesh node until interrupted",
		Long: `run joins the home's mesh with the pairing in --state and speaks for the
device to the nearest hub: it announces the entities, reports their states
and carries out the hub's commands. Neighbours come from --peer and from
beacons on the --multicast interfaces; with neither, the node links
directly with the hubs the pairing named.

Simulated entities (--simulate) make a device without hardware: a
temperature sensor on a random walk, a switch, a dimmable light and a door
contact. Real entities are written in Go against mesh/agent.Entity.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if state == "" {
				return homemesh.Invalid("state", "is required: the directory homemesh agent pair wrote")
			}
			if hello != 0 && (hello < 10*time.Millisecond || hello > 10*time.Minute) {
				return homemesh.Invalid("hello", "must be between 10ms and 10m")
			}
			if len(simulate) == 0 {
				return homemesh.Invalid("simulate", "name the simulated entities to run (%s); real entities are added in Go with mesh/agent", strings.Join(agent.Simulations, ", "))
			}
			entities, err := agent.Simulate(simulate, seed)
			if err != nil {
				var he *homemesh.Error
				if errors.As(err, &he) {
					c := *he
					c.Field = "simulate"
					return &c
				}
				return err
			}
			if name == "" {
				name, _ = os.Hostname()
				name = strings.TrimSpace("homemesh agent " + name)
			}
			log := newLogger(stderr, logLevel)
			err = agent.RunNode(cmd.Context(), agent.NodeConfig{
				StateDir: state, Listen: listen, Peers: peers, Multicast: multicast, Hello: hello, Log: log,
				Agent: agent.Config{
					Device:       meshapp.DeviceInfo{Name: name, Manufacturer: "homemesh", Model: "agent (simulated)"},
					Entities:     entities,
					PollInterval: poll, TelemetryInterval: telemetry,
				},
				Ready: func(n *meshnode.Node) {
					fmt.Fprintf(stdout, "mesh agent: node %s listening on %s\n", n.ID(), n.Addr())
				},
			})
			if errors.Is(err, agent.ErrNotPaired) {
				return fmt.Errorf("state: %w", err)
			}
			return flagError(err)
		},
	}
	f := cmd.Flags()
	f.StringVar(&state, "state", "", "the directory homemesh agent pair wrote (required)")
	f.StringVar(&listen, "listen", fmt.Sprintf(":%d", meshnode.DefaultPort), "the node's UDP address")
	f.StringArrayVar(&peers, "peer", nil, "a neighbour's UDP address host:port (repeatable)")
	f.StringArrayVar(&multicast, "multicast", nil, "a network interface on which to find neighbours (repeatable)")
	f.StringSliceVar(&simulate, "simulate", nil, "simulated entities: "+strings.Join(agent.Simulations, ","))
	f.Uint64Var(&seed, "seed", 1, "seed of the simulations")
	f.DurationVar(&hello, "hello", 0, "routing Hello interval (default 1s)")
	f.DurationVar(&poll, "poll", 0, "how often entity states are checked (default 1s)")
	f.DurationVar(&telemetry, "telemetry", 0, "how often every state is sent even when unchanged (default 1m)")
	f.StringVar(&name, "name", "", "the device's name (default: homemesh agent <host name>)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
