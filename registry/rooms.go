package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/homemesh/homemesh"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MaxNameLen bounds the names people give rooms and devices.
const MaxNameLen = 128

// DeviceUpdate is a person's change to a device. Nil fields stay as they
// are. RoomID "" takes the device out of its room. A Name set here
// survives the device announcing itself again.
type DeviceUpdate struct {
	RoomID *string `json:"room_id,omitempty"`
	Name   *string `json:"name,omitempty"`
}

// CheckName checks a display name given by a person: 1 to MaxNameLen bytes
// of UTF-8 text without control characters, not only spaces.
func CheckName(field, name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return homemesh.Invalid(field, "is required")
	case len(name) > MaxNameLen:
		return homemesh.Invalid(field, "must be at most %d bytes", MaxNameLen)
	case !utf8.ValidString(name):
		return homemesh.Invalid(field, "must be valid UTF-8 text")
	case strings.ContainsFunc(name, unicode.IsControl):
		return homemesh.Invalid(field, "must not contain control characters")
	}
	return nil
}

func (s *Service) handleRoomsList(ctx context.Context, msg *nats.Msg) (any, error) {
	s.mu.RLock()
	out := make([]homemesh.Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		out = append(out, r)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b homemesh.Room) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// handleRoomsCreate creates a room whose ID is derived from its name, so
// scopes and filters read naturally ("living_room"). KV Create makes two
// rooms with one ID a conflict, also across registry processes.
func (s *Service) handleRoomsCreate(ctx context.Context, msg *nats.Msg) (any, error) {
	req := decode(msg)
	if req.Room == nil {
		return nil, homemesh.Invalid("room", "is required")
	}
	name := strings.TrimSpace(req.Room.Name)
	if err := CheckName("name", name); err != nil {
		return nil, err
	}
	r := homemesh.Room{ID: homemesh.Slug(name), HomeID: s.cfg.Home, Name: name}
	data, _ := json.Marshal(r)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	rev, err := s.kvRooms.Create(ctx, r.ID, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, &homemesh.Error{Kind: homemesh.KindConflict, Field: "name", Message: fmt.Sprintf("a room with the ID %q exists", r.ID)}
	}
	if err != nil {
		return nil, &homemesh.Error{Op: "registry.rooms", Kind: homemesh.KindUnavailable, Message: "storage unavailable", Err: err}
	}
	s.mu.Lock()
	s.noteRev(s.kvRooms, r.ID, rev)
	s.rooms[r.ID] = r
	s.mu.Unlock()
	s.event(EventRoomAdded, r)
	return r, nil
}

// handleRoomsRemove deletes a room and takes its devices out of it first,
// so no device is left pointing at a room that is gone.
func (s *Service) handleRoomsRemove(ctx context.Context, msg *nats.Msg) (any, error) {
	req := decode(msg)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	r, ok := s.rooms[req.ID]
	var inRoom []homemesh.Device
	for _, d := range s.devices {
		if d.RoomID == req.ID {
			inRoom = append(inRoom, d)
		}
	}
	s.mu.RUnlock()
	if !ok {
		return nil, homemesh.Errorf(homemesh.KindNotFound, "no room %q", req.ID)
	}
	for _, d := range inRoom {
		d.RoomID = ""
		if _, err := s.storeDevice(ctx, d, true); err != nil {
			return nil, err
		}
	}
	if err := s.kvRooms.Delete(ctx, r.ID); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, &homemesh.Error{Op: "registry.rooms", Kind: homemesh.KindUnavailable, Message: "storage unavailable", Err: err}
	}
	s.mu.Lock()
	delete(s.rooms, r.ID)
	s.mu.Unlock()
	s.event(EventRoomRemoved, r)
	return struct{}{}, nil
}

func (s *Service) handleDevicesUpdate(ctx context.Context, msg *nats.Msg) (any, error) {
	req := decode(msg)
	up := req.Update
	if up == nil || (up.RoomID == nil && up.Name == nil) {
		return nil, homemesh.Invalid("body", "nothing to change: give room_id or name")
	}
	var name string
	if up.Name != nil {
		name = strings.TrimSpace(*up.Name)
		if err := CheckName("name", name); err != nil {
			return nil, err
		}
	}
	if up.RoomID != nil && *up.RoomID != "" {
		if err := homemesh.CheckID("room_id", *up.RoomID); err != nil {
			return nil, err
		}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	d, ok := s.devices[req.ID]
	roomKnown := up.RoomID == nil || *up.RoomID == ""
	if !roomKnown {
		_, roomKnown = s.rooms[*up.RoomID]
	}
	s.mu.RUnlock()
	if !ok {
		return nil, homemesh.Errorf(homemesh.KindNotFound, "no device %q", req.ID)
	}
	if !roomKnown {
		return nil, homemesh.Invalid("room_id", "no room %q; create it first", *up.RoomID)
	}
	if up.RoomID != nil {
		d.RoomID = *up.RoomID
	}
	if up.Name != nil {
		d.Name, d.NameByUser = name, name
	}
	return s.storeDevice(ctx, d, true)
}

// storeDevice stores d as changed now, announces it and returns it as
// stored. s.writeMu must be held.
func (s *Service) storeDevice(ctx context.Context, d homemesh.Device, existed bool) (homemesh.Device, error) {
	d.UpdatedAt = time.Now().UTC()
	if err := s.store(ctx, s.kvDevices, d.ID, d); err != nil {
		return d, err
	}
	s.mu.Lock()
	s.devices[d.ID] = d
	s.mu.Unlock()
	kind := EventDeviceAdded
	if existed {
		kind = EventDeviceUpdated
	}
	s.event(kind, d)
	return d, nil
}
