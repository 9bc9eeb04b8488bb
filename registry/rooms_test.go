package registry_test

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/registry"
)

func TestRoomsAndDeviceUpdates(t *testing.T) {
	ctx := context.Background()
	srv := bustest.Server(t)
	stop := start(t, srv)
	client := registry.NewClient(bustest.Conn(t, srv), home)

	living, err := client.CreateRoom(ctx, "  Living room ")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(homemesh.Room{ID: "living_room", HomeID: home, Name: "Living room"}, living); diff != "" {
		t.Errorf("room (-want +got):\n%s", diff)
	}
	if _, err := client.CreateRoom(ctx, "living room"); homemesh.ErrorKind(err) != homemesh.KindConflict || homemesh.ErrorField(err) != "name" {
		t.Errorf("same ID twice: %v, want conflict on name", err)
	}
	if _, err := client.CreateRoom(ctx, "Bedroom"); err != nil {
		t.Fatal(err)
	}

	if _, err := client.PutDevice(ctx, sampleDevice()); err != nil {
		t.Fatal(err)
	}
	d, err := client.UpdateDevice(ctx, "kitchen-plug", registry.DeviceUpdate{RoomID: ptr("living_room"), Name: ptr("Sofa lamp")})
	if err != nil {
		t.Fatal(err)
	}
	if d.RoomID != "living_room" || d.Name != "Sofa lamp" {
		t.Fatalf("updated device = %+v", d)
	}
	// The device announces itself again: its room and its given name stay.
	if d, err = client.PutDevice(ctx, sampleDevice()); err != nil || d.RoomID != "living_room" || d.Name != "Sofa lamp" {
		t.Fatalf("after re-announcement: %+v, %v", d, err)
	}

	bad := []struct {
		name  string
		id    string
		up    registry.DeviceUpdate
		kind  homemesh.Kind
		field string
	}{
		{"unknown room", "kitchen-plug", registry.DeviceUpdate{RoomID: ptr("attic")}, homemesh.KindInvalid, "room_id"},
		{"invalid room", "kitchen-plug", registry.DeviceUpdate{RoomID: ptr("Attic!")}, homemesh.KindInvalid, "room_id"},
		{"empty name", "kitchen-plug", registry.DeviceUpdate{Name: ptr("  ")}, homemesh.KindInvalid, "name"},
		{"long name", "kitchen-plug", registry.DeviceUpdate{Name: ptr(strings.Repeat("a", registry.MaxNameLen+1))}, homemesh.KindInvalid, "name"},
		{"control characters", "kitchen-plug", registry.DeviceUpdate{Name: ptr("a\x00b")}, homemesh.KindInvalid, "name"},
		{"nothing", "kitchen-plug", registry.DeviceUpdate{}, homemesh.KindInvalid, "body"},
		{"unknown device", "nope", registry.DeviceUpdate{Name: ptr("x")}, homemesh.KindNotFound, ""},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.UpdateDevice(ctx, tt.id, tt.up)
			if homemesh.ErrorKind(err) != tt.kind || homemesh.ErrorField(err) != tt.field {
				t.Errorf("error = %v, want kind %s field %q", err, tt.kind, tt.field)
			}
		})
	}

	// Rooms survive a restart.
	stop()
	start(t, srv)
	rooms, err := client.Rooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rooms {
		ids = append(ids, r.ID)
	}
	if diff := cmp.Diff([]string{"bedroom", "living_room"}, ids); diff != "" {
		t.Errorf("rooms after restart (-want +got):\n%s", diff)
	}

	// Deleting a room takes its devices out of it.
	if err := client.DeleteRoom(ctx, "living_room"); err != nil {
		t.Fatal(err)
	}
	if err := client.DeleteRoom(ctx, "living_room"); homemesh.ErrorKind(err) != homemesh.KindNotFound {
		t.Errorf("second delete: %v, want not found", err)
	}
	hmtest.WaitFor(t, 5*time.Second, "the device to leave the room", func() bool {
		d, err := client.Device(ctx, "kitchen-plug")
		return err == nil && d.RoomID == ""
	})
	// An empty room ID takes a device out of its room too.
	if _, err := client.UpdateDevice(ctx, "kitchen-plug", registry.DeviceUpdate{RoomID: ptr("bedroom")}); err != nil {
		t.Fatal(err)
	}
	if d, err := client.UpdateDevice(ctx, "kitchen-plug", registry.DeviceUpdate{RoomID: ptr("")}); err != nil || d.RoomID != "" {
		t.Fatalf("leaving the room: %+v, %v", d, err)
	}
}

func ptr[T any](v T) *T { return &v }

func FuzzCheckName(f *testing.F) {
	for _, seed := range []string{"Living room", "", "  ", "a\x00b", "é", strings.Repeat("a", 200), "\xff"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := registry.CheckName("name", name)
		if err != nil {
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != "name" {
				t.Fatalf("error without kind or field: %v", err)
			}
			return
		}
		if strings.TrimSpace(name) == "" || len(name) > registry.MaxNameLen || !utf8.ValidString(name) {
			t.Fatalf("accepted %q", name)
		}
	})
}
