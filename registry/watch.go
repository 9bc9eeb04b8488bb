package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/nats-io/nats.go/jetstream"
)

// watch loads every bucket and keeps the in-memory copies fresh with writes
// made by other registry processes. It returns once the initial load is
// complete; the watches go on until ctx ends.
func (s *Service) watch(ctx context.Context) error {
	for _, kv := range []jetstream.KeyValue{s.kvRooms, s.kvDevices, s.kvEntities, s.kvStates} {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			return &homemesh.Error{Op: "registry.watch", Kind: homemesh.KindUnavailable, Message: "storage unavailable", Err: err}
		}
		loaded := make(chan struct{})
		go s.follow(ctx, kv, w, loaded)
		select {
		case <-loaded:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Minute):
			return fmt.Errorf("registry: loading %s took over a minute", kv.Bucket())
		}
	}
	return nil
}

func (s *Service) follow(ctx context.Context, kv jetstream.KeyValue, w jetstream.KeyWatcher, loaded chan struct{}) {
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case entry, ok := <-w.Updates():
			if !ok {
				return
			}
			if entry == nil { // end of the initial values
				close(loaded)
				continue
			}
			s.apply(kv, entry)
		}
	}
}

func (s *Service) apply(kv jetstream.KeyValue, entry jetstream.KeyValueEntry) {
	deleted := entry.Operation() != jetstream.KeyValuePut
	key := entry.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	if kv != s.kvStates && !s.noteRev(kv, key, entry.Revision()) {
		return // an echo of something this process already applied
	}
	var err error
	switch kv {
	case s.kvRooms:
		if deleted {
			delete(s.rooms, key)
			return
		}
		var r homemesh.Room
		if err = json.Unmarshal(entry.Value(), &r); err == nil {
			s.rooms[key] = r
		}
	case s.kvDevices:
		if deleted {
			delete(s.devices, key)
			return
		}
		var d homemesh.Device
		if err = json.Unmarshal(entry.Value(), &d); err == nil {
			s.devices[key] = d
		}
	case s.kvEntities:
		if deleted {
			delete(s.entities, key)
			return
		}
		var e homemesh.Entity
		if err = json.Unmarshal(entry.Value(), &e); err == nil {
			e.State = homemesh.State{}
			s.entities[key] = e
		}
	case s.kvStates:
		rec := s.states[key]
		if deleted {
			if rec == nil || rec.pending == 0 {
				delete(s.states, key)
			}
			return
		}
		if rec != nil && (rec.pending > 0 || entry.Revision() <= rec.rev) {
			return
		}
		var st homemesh.State
		if err = json.Unmarshal(entry.Value(), &st); err == nil {
			s.states[key] = &stateRecord{state: st, raw: entry.Value(), rev: entry.Revision()}
		}
	}
	if err != nil {
		// A corrupt record must not take the registry down; it is skipped
		// and reported so an operator can repair it.
		s.log.Error("skipping unreadable record", "bucket", kv.Bucket(), "key", key, "err", err)
	}
}
