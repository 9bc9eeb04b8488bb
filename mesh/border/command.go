package border

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/route"
	"github.com/nats-io/nats.go"
)

// pending is a command waiting for its agent's result.
type pending struct {
	node route.NodeID
	done chan *meshapp.Result
}

// onCommand receives every command of the home, while the border runs
// (runCtx). Those for mesh devices
// are served, each on its own goroutine since it waits for an agent;
// the others belong to the edge and are left unanswered here.
func (b *Border) onCommand(runCtx context.Context, m *nats.Msg) {
	_, device, _, ok := bus.SplitCommandSubject(m.Subject)
	if !ok {
		return
	}
	if _, mesh := meshapp.ParseDeviceID(device); !mesh {
		return
	}
	if runCtx.Err() != nil {
		return // stopping: another border, or this one restarted, answers
	}
	select {
	case b.cmdSlots <- struct{}{}:
	default:
		b.met.commands.WithLabelValues("busy").Inc()
		b.deps.Bus.Reply(m, nil, &homemesh.Error{Op: "border.command", Kind: homemesh.KindUnavailable, Message: "too many mesh commands in flight; try again", RetryAfter: time.Second})
		return
	}
	b.cmdWG.Add(1)
	go func() {
		defer b.cmdWG.Done()
		defer func() { <-b.cmdSlots }()
		// A stopping border ends the wait: its caller hears why at once.
		ctx, cancel := context.WithTimeout(runCtx, b.cfg.CommandTimeout+time.Second)
		defer cancel()
		err := b.command(ctx, m)
		b.met.commands.WithLabelValues(outcome(err)).Inc()
		if m.Reply != "" {
			b.deps.Bus.Reply(m, struct{}{}, err)
		}
	}()
}

// outcome names a command's fate for the metrics.
func outcome(err error) string {
	if err == nil {
		return "done"
	}
	return string(homemesh.ErrorKind(err))
}

// command checks one command, sends it to its agent and waits for the
// result.
func (b *Border) command(ctx context.Context, m *nats.Msg) error {
	var cmd homemesh.Command
	if err := json.Unmarshal(m.Data, &cmd); err != nil {
		return homemesh.Invalid("body", "not a JSON command: %v", err)
	}
	_, device, entity, _ := bus.SplitCommandSubject(m.Subject)
	if cmd.EntityID != entity {
		return homemesh.Invalid("entity_id", "does not match the subject")
	}
	if cmd.HomeID != "" && cmd.HomeID != b.cfg.Home {
		return homemesh.Invalid("home_id", "does not match the subject")
	}
	id := b.nextID.Add(1)
	msg, node, ok := meshapp.NewCommand(id, cmd)
	if !ok || meshapp.DeviceID(node) != device {
		return homemesh.Errorf(homemesh.KindNotFound, "entity %q is not a mesh entity of device %q", entity, device)
	}
	if b.isRevoked(node) {
		return &homemesh.Error{Op: "border.command", Kind: homemesh.KindPermission,
			Message: "the mesh node of device " + device + " was revoked"}
	}
	b.mu.Lock()
	a := b.agents[node]
	var ent entityRecord
	var known, down bool
	if a != nil {
		ent, known = a.rec.Entities[msg.UniqueID]
		down = a.down
	}
	b.mu.Unlock()
	if !known {
		return homemesh.Errorf(homemesh.KindNotFound, "no mesh entity %q: its agent has not announced it to this hub", entity)
	}
	if err := checkCommand(ent, msg.Name); err != nil {
		return err
	}
	if down {
		return &homemesh.Error{Op: "border.command", Kind: homemesh.KindUnavailable,
			Message: "the mesh agent of " + entity + " is unreachable: the hub has no route to it"}
	}
	payload, err := meshapp.Encode(msg)
	if err != nil {
		return err // names the parameter that cannot travel
	}
	p := &pending{node: node, done: make(chan *meshapp.Result, 1)}
	b.mu.Lock()
	b.pending[id] = p
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
	}()
	if err := b.mesh.Send(node, payload); err != nil {
		return &homemesh.Error{Op: "border.command", Kind: homemesh.KindUnavailable, Message: "command not sent to the mesh agent", Err: err}
	}
	timer := time.NewTimer(b.cfg.CommandTimeout)
	defer timer.Stop()
	select {
	case r := <-p.done:
		if r.Error != "" {
			return &homemesh.Error{Op: "border.command", Kind: homemesh.KindInvalid, Field: "command",
				Message: "the device refused the command: " + r.Error}
		}
		b.log.Info("command done", "entity_id", entity, "command", msg.Name, "peer", node.String())
		return nil
	case <-timer.C:
		return &homemesh.Error{Op: "border.command", Kind: homemesh.KindUnavailable,
			Message: "the mesh agent of " + entity + " did not answer within " + b.cfg.CommandTimeout.String()}
	case <-ctx.Done():
		return &homemesh.Error{Op: "border.command", Kind: homemesh.KindUnavailable, Message: "the hub is stopping", Err: ctx.Err()}
	}
}

// passive lists the kinds that only report and accept no command.
var passive = []homemesh.EntityKind{homemesh.KindSensor, homemesh.KindBinarySensor, homemesh.KindEvent}

// checkCommand refuses a command the entity did not announce: the commands
// it listed, or, when it listed none, any command for a kind that only
// reports. What the parameters mean is the agent's to check.
func checkCommand(e entityRecord, name string) error {
	if len(e.Commands) > 0 {
		if !slices.Contains(e.Commands, name) {
			return homemesh.Invalid("command", "%q is not a command of this entity (it accepts %s)", name, strings.Join(e.Commands, ", "))
		}
		return nil
	}
	if slices.Contains(passive, e.Kind) {
		return homemesh.Invalid("command", "a %s accepts no commands", e.Kind)
	}
	return nil
}

// result hands an agent's result to the command waiting for it. A result
// from any other node than the one commanded is ignored: an agent answers
// only for itself.
func (b *Border) result(from route.NodeID, r *meshapp.Result) {
	b.mu.Lock()
	p := b.pending[r.ID]
	b.mu.Unlock()
	if p == nil || p.node != from {
		b.met.dropped.WithLabelValues("unexpected_result").Inc()
		return
	}
	select {
	case p.done <- r:
	default:
	}
}
