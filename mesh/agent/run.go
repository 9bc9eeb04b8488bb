package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/meshnode"
	"github.com/homemesh/homemesh/mesh/route"
)

// NodeConfig is a paired agent's mesh node and device, as `homemesh agent
// run` takes them.
type NodeConfig struct {
	// StateDir holds the pairing (Pair); the routing seqno is kept there
	// too.
	StateDir string
	// Listen is the node's UDP address (meshnode.Config.Listen).
	Listen string
	// Peers are neighbour addresses to link with. When neither Peers nor
	// Multicast names any, the hubs' addresses from the pairing are used,
	// so an agent within reach of its hub needs no settings.
	Peers []string
	// Multicast names interfaces to find neighbours on by beacons.
	Multicast []string
	// MulticastGroup overrides meshnode.DefaultMulticastGroup (tests).
	MulticastGroup string
	// Hello is the routing Hello interval; 0 takes the default (1 s).
	Hello time.Duration
	// Agent configures the device and its entities.
	Agent Config
	// Log receives the node's and the agent's log lines.
	Log *slog.Logger
	// Ready, when set, is called with the node once its socket is bound
	// (tests, and the command that prints the address).
	Ready func(*meshnode.Node)
}

// RunNode loads the pairing from cfg.StateDir, builds the mesh node and
// runs the agent on it until ctx ends.
func RunNode(ctx context.Context, cfg NodeConfig) error {
	p, err := LoadPairing(cfg.StateDir)
	if err != nil {
		return err
	}
	v, err := p.Verifier()
	if err != nil {
		return err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Agent.Log = log
	cfg.Agent.StateDir = cfg.StateDir
	a, err := New(cfg.Agent)
	if err != nil {
		return err
	}
	peers := cfg.Peers
	if len(peers) == 0 && len(cfg.Multicast) == 0 {
		peers = reachable(p.HubAddresses(), log)
	}
	// A leaf holds no routes, so it learns of no hub by routing: it reaches
	// the ones its pairing named through its parent.
	var hubs []route.NodeID
	for _, h := range p.Hubs {
		if id, err := route.ParseNodeID(h.NodeID); err == nil {
			hubs = append(hubs, id)
		}
	}
	node, err := meshnode.New(meshnode.Config{
		Identity: p.Identity(), Verifier: v,
		Listen: cfg.Listen, Peers: peers, Multicast: cfg.Multicast, MulticastGroup: cfg.MulticastGroup,
		Route:    route.Config{HelloInterval: cfg.Hello},
		StateDir: cfg.StateDir, Log: log,
		OnMessage: a.Deliver, KeyOf: p.KeyOf, Hubs: hubs,
	})
	if errors.Is(err, syscall.EADDRINUSE) {
		return homemesh.Invalid("listen", "%s is taken by another program: choose another address", cfg.Listen)
	}
	if err != nil {
		return err
	}
	log.Info("mesh agent node", "node", p.NodeID.String(), "role", p.Role.String(), "home", p.Home,
		"addr", node.Addr().String(), "peers", len(peers))
	if cfg.Ready != nil {
		cfg.Ready(node)
	}
	return a.Run(ctx, node)
}

// reachable keeps the addresses that resolve now: a hub's name that does
// not resolve (on another network) must not stop the agent from reaching
// the others.
func reachable(addrs []string, log *slog.Logger) []string {
	var out []string
	for _, a := range addrs {
		if _, err := net.ResolveUDPAddr("udp", a); err != nil {
			log.Warn("hub address skipped", "addr", a, "err", err)
			continue
		}
		out = append(out, a)
	}
	return out
}
