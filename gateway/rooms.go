package gateway

import (
	"net/http"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/registry"
)

// roomRequest is the body of POST /api/v1/rooms.
type roomRequest struct {
	Name string `json:"name"`
}

func (q *roomRequest) validate() error { return registry.CheckName("name", q.Name) }

// devicePatchRequest is the body of PATCH /api/v1/devices/{id}. A room_id
// of "" takes the device out of its room.
type devicePatchRequest struct {
	RoomID *string `json:"room_id,omitempty"`
	Name   *string `json:"name,omitempty"`
}

func (q *devicePatchRequest) validate() error {
	if q.RoomID == nil && q.Name == nil {
		return homemesh.Invalid("body", "nothing to change: give room_id or name")
	}
	if q.RoomID != nil && *q.RoomID != "" {
		if err := homemesh.CheckID("room_id", *q.RoomID); err != nil {
			return err
		}
	}
	if q.Name != nil {
		return registry.CheckName("name", *q.Name)
	}
	return nil
}

func (g *Gateway) listRooms(w http.ResponseWriter, r *http.Request, c caller) {
	rs, err := g.reg.Rooms(r.Context())
	if err == nil {
		rs = visibleRooms(c.claims.Scope, rs)
	}
	g.reply(w, r, rs, err)
}

func (g *Gateway) createRoom(w http.ResponseWriter, r *http.Request, c caller) {
	var q roomRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	room, err := g.reg.CreateRoom(r.Context(), q.Name)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	g.log.Info("room created", "room_id", room.ID, "user", c.claims.Username)
	writeJSON(w, http.StatusCreated, room)
}

func (g *Gateway) deleteRoom(w http.ResponseWriter, r *http.Request, c caller) {
	id, err := pathID(r, "id")
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if err := g.reg.DeleteRoom(r.Context(), id); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	g.log.Info("room deleted", "room_id", id, "user", c.claims.Username)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) patchDevice(w http.ResponseWriter, r *http.Request, c caller) {
	id, err := pathID(r, "id")
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	var q devicePatchRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	// An admin limited to some rooms may only change what they can see.
	if _, err := g.visibleDevice(r.Context(), c, id); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	d, err := g.reg.UpdateDevice(r.Context(), id, registry.DeviceUpdate{RoomID: q.RoomID, Name: q.Name})
	if err == nil {
		g.log.Info("device changed", "device_id", id, "user", c.claims.Username)
	}
	g.reply(w, r, d, err)
}
