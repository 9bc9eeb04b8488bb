package gateway

import (
	"context"
	"net/http"
	"slices"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/registry"
)

// This file is the gateway's authorization: which role may do what (the
// policy table), which entities a user's scope lets them see and command,
// and which commands and events are kept from whom. Handlers ask here and
// nowhere else. Everything not granted is denied.

// action is something a route does, as the policy table names it.
type action string

const (
	// actRead reads devices, entities, rooms, the event stream, the
	// history and the mesh topology, each narrowed to the caller's scope.
	actRead action = "read"
	// actCommand sends commands to in-scope entities; see mayCommand for
	// what guests may never command.
	actCommand action = "command"
	// actOwnAccount reads one's own profile, changes one's own password,
	// manages one's own passkeys and TOTP and ends one's own sessions.
	actOwnAccount action = "own_account"
	// actManageUsers creates, lists, reads, changes and deletes users. The
	// auth service then decides which users: admins only members and
	// guests, and nobody removes the last owner.
	actManageUsers action = "manage_users"
	// actManageCredentials creates, lists and revokes MQTT credentials.
	actManageCredentials action = "manage_credentials"
	// actManageRooms creates and deletes rooms.
	actManageRooms action = "manage_rooms"
	// actManageDevices renames devices and moves them between rooms.
	actManageDevices action = "manage_devices"
	// actManagePairings creates setup codes that let devices join.
	actManagePairings action = "manage_pairings"
	// actManageMeshNodes lists the paired mesh nodes and revokes them.
	actManageMeshNodes action = "manage_mesh_nodes"
	// actCreateTokens creates long-lived integration tokens, never above
	// the creator's own role and scope (auth checks that).
	actCreateTokens action = "create_tokens"
	// actOwnTokens lists and deletes integration tokens: one's own, and for
	// owners and admins anyone's (auth decides which).
	actOwnTokens action = "own_tokens"
	// actReadAudit reads the audit log.
	actReadAudit action = "read_audit"
	// actRotateKeys replaces the token signing key.
	actRotateKeys action = "rotate_keys"
)

var (
	everyone = []string{auth.RoleOwner, auth.RoleAdmin, auth.RoleMember, auth.RoleGuest}
	admins   = []string{auth.RoleOwner, auth.RoleAdmin}
)

// policy is the role × action table. An action missing here, or a role
// missing from its row, is denied.
var policy = map[action][]string{
	actRead:              everyone,
	actCommand:           everyone,
	actOwnAccount:        everyone,
	actManageUsers:       admins,
	actManageCredentials: admins,
	actManageRooms:       admins,
	actManageDevices:     admins,
	actManagePairings:    admins,
	actManageMeshNodes:   admins,
	actCreateTokens:      {auth.RoleOwner, auth.RoleAdmin, auth.RoleMember},
	actOwnTokens:         everyone,
	actReadAudit:         admins,
	actRotateKeys:        {auth.RoleOwner},
}

// allows reports whether role may do a.
func allows(role string, a action) bool { return slices.Contains(policy[a], role) }

// eventRoles says which roles receive each event kind on the WebSocket,
// beyond state changes (which follow the scope alone). Kinds not listed,
// such as token revocations, reach nobody.
var eventRoles = map[string][]string{
	registry.EventEntityAdded:   everyone,
	registry.EventEntityUpdated: everyone,
	registry.EventEntityRemoved: everyone,
	registry.EventDeviceAdded:   everyone,
	registry.EventDeviceUpdated: everyone,
	registry.EventDeviceRemoved: everyone,
	// Which MQTT credentials exist is the business of those who manage them.
	auth.EventCredentialRevoked: admins,
	// So are the mesh nodes paired and revoked.
	auth.EventMeshNodeRevoked: admins,
}

// storedEventRoles says which roles may read stored events of kind in the
// history: those the event stream sends the kind to. Kinds it sends nobody
// (token revocations, key rotations, throttled devices, room changes) tell
// of the home's security and administration, so they are for those who
// read the audit log.
func storedEventRoles(kind string) []string {
	if roles, ok := eventRoles[kind]; ok {
		return roles
	}
	return policy[actReadAudit]
}

// isSecurity reports whether e guards the home: locks, alarm panels, and
// covers that are doors, gates or garage doors. Guests never command them.
func isSecurity(e homemesh.Entity) bool {
	switch e.Kind {
	case homemesh.KindLock, homemesh.KindAlarmControlPanel:
		return true
	case homemesh.KindCover:
		switch e.DeviceClass {
		case "door", "garage", "gate":
			return true
		}
	}
	return false
}

// mayCommand decides, for an in-scope entity, whether role may command it.
func mayCommand(role string, e homemesh.Entity) bool {
	if !allows(role, actCommand) {
		return false
	}
	return role != auth.RoleGuest || !isSecurity(e)
}

// inScope reports whether an entity of the device in room passes every
// non-empty list of sc.
func inScope(sc auth.Scope, e homemesh.Entity, room string) bool {
	if len(sc.Rooms) > 0 && !slices.Contains(sc.Rooms, room) {
		return false
	}
	if len(sc.Kinds) > 0 && !slices.Contains(sc.Kinds, string(e.Kind)) {
		return false
	}
	if len(sc.Entities) > 0 && !slices.Contains(sc.Entities, e.ID) {
		return false
	}
	return true
}

// scopeView answers scope questions for one request: it fetches the rooms
// of devices only when the scope limits rooms.
type scopeView struct {
	scope auth.Scope
	rooms map[string]string // device ID → room ID, when the scope names rooms
}

func (g *Gateway) scopeView(ctx context.Context, sc auth.Scope) (*scopeView, error) {
	v := &scopeView{scope: sc}
	if len(sc.Rooms) == 0 {
		return v, nil
	}
	ds, err := g.reg.Devices(ctx)
	if err != nil {
		return nil, err
	}
	v.rooms = make(map[string]string, len(ds))
	for _, d := range ds {
		v.rooms[d.ID] = d.RoomID
	}
	return v, nil
}

// unlimited reports whether the scope limits nothing.
func (v *scopeView) unlimited() bool { return v.scope.IsZero() }

func (v *scopeView) entity(e homemesh.Entity) bool { return inScope(v.scope, e, v.rooms[e.DeviceID]) }

// entities keeps the entities in scope.
func (v *scopeView) entities(es []homemesh.Entity) []homemesh.Entity {
	if v.unlimited() {
		return es
	}
	return slices.DeleteFunc(es, func(e homemesh.Entity) bool { return !v.entity(e) })
}

// visibleEntity fetches an entity and hides it, as not found, when it is
// out of the caller's scope: existence is not revealed.
func (g *Gateway) visibleEntity(ctx context.Context, c caller, id string) (homemesh.Entity, error) {
	e, err := g.reg.Entity(ctx, id)
	if err != nil {
		return e, err
	}
	ok, err := g.callerSees(ctx, c, e)
	if err != nil {
		return homemesh.Entity{}, err
	}
	if !ok {
		return homemesh.Entity{}, errNoEntity(id)
	}
	return e, nil
}

// callerSees reports whether e is in the caller's scope, looking up its
// device's room only when the scope names rooms.
func (g *Gateway) callerSees(ctx context.Context, c caller, e homemesh.Entity) (bool, error) {
	if c.claims.Scope.IsZero() {
		return true, nil
	}
	room := ""
	if len(c.claims.Scope.Rooms) > 0 {
		d, err := g.reg.Device(ctx, e.DeviceID)
		if err != nil && homemesh.ErrorKind(err) != homemesh.KindNotFound {
			return false, err
		}
		room = d.RoomID
	}
	return inScope(c.claims.Scope, e, room), nil
}

// visibleDevice fetches a device and hides it, as not found, unless at
// least one of its entities is in the caller's scope.
func (g *Gateway) visibleDevice(ctx context.Context, c caller, id string) (homemesh.Device, error) {
	d, err := g.reg.Device(ctx, id)
	if err != nil || c.claims.Scope.IsZero() {
		return d, err
	}
	es, err := g.reg.Entities(ctx, registry.EntityFilter{DeviceID: id})
	if err != nil {
		return homemesh.Device{}, err
	}
	for _, e := range es {
		if inScope(c.claims.Scope, e, d.RoomID) {
			return d, nil
		}
	}
	return homemesh.Device{}, homemesh.Errorf(homemesh.KindNotFound, "no device %q", id)
}

func errNoEntity(id string) error { return homemesh.Errorf(homemesh.KindNotFound, "no entity %q", id) }

// visibleDevices keeps the devices with at least one entity in scope.
func (g *Gateway) visibleDevices(ctx context.Context, c caller, ds []homemesh.Device) ([]homemesh.Device, error) {
	if c.claims.Scope.IsZero() {
		return ds, nil
	}
	es, err := g.reg.Entities(ctx, registry.EntityFilter{})
	if err != nil {
		return nil, err
	}
	rooms := make(map[string]string, len(ds))
	for _, d := range ds {
		rooms[d.ID] = d.RoomID
	}
	seen := map[string]bool{}
	for _, e := range es {
		if inScope(c.claims.Scope, e, rooms[e.DeviceID]) {
			seen[e.DeviceID] = true
		}
	}
	return slices.DeleteFunc(ds, func(d homemesh.Device) bool { return !seen[d.ID] }), nil
}

// visibleRooms keeps the rooms a scope names, when it names rooms.
func visibleRooms(sc auth.Scope, rs []homemesh.Room) []homemesh.Room {
	if len(sc.Rooms) == 0 {
		return rs
	}
	return slices.DeleteFunc(rs, func(r homemesh.Room) bool { return !slices.Contains(sc.Rooms, r.ID) })
}

// auditCommand records a command to a security entity, or a refused one,
// in the audit log. Parameters are never recorded: they may hold an alarm
// code.
func (g *Gateway) auditCommand(r *http.Request, c caller, e homemesh.Entity, command, act, outcome, reason string) {
	details := map[string]string{"command": command, "kind": string(e.Kind), "device_id": e.DeviceID}
	if reason != "" {
		details["reason"] = reason
	}
	err := g.auth.Audit(r.Context(), auth.AuditEntry{Action: act, Outcome: outcome, Actor: c.claims.Username,
		ActorID: c.claims.UserID, Source: remoteIP(r), Target: e.ID, Details: details})
	if err != nil {
		g.log.Error("audit entry not recorded", "action", act, "entity_id", e.ID, "user", c.claims.Username, "err", err)
	}
}
