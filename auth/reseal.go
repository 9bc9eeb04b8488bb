package auth

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/homemesh/homemesh"
	"github.com/nats-io/nats.go/jetstream"
)

// sealedUserFields are the JSON fields of a user record that hold sealed
// secrets, each sealed with the purpose "<prefix>.<user id>". ResealAll
// decodes user records generically, so it re-seals these fields without
// touching, or needing to know, the rest of the record.
var sealedUserFields = []struct{ field, purposePrefix string }{
	{"totp_secret", "totp"},
	{"totp_pending", "totp"},
}

// ResealReport says what ResealAll did.
type ResealReport struct {
	// KeyID is the ID (SecretKeyID) of the key everything is now sealed
	// with.
	KeyID string
	// Resealed names each record sealed again with the current key, as
	// "keys/<name>" for the keys bucket and "users/<user name>/<field>" for
	// the sealed fields of user records.
	Resealed []string
	// Current counts sealed records that already were in the current format
	// with the current key.
	Current int
}

// ResealAll seals every sealed record again with the current secret key:
// every record of the keys bucket (signing keys, the CA, the onboarding
// code) and the sealed fields of every user record. It is the work of a
// master key rotation: run it with the new key as Config.SecretKey and the
// old one among Config.PreviousSecretKeys, and afterwards nothing needs the
// old key.
//
// Records are re-sealed one at a time with a compare-and-set on their
// revision, so a crash midway leaves each record sealed with the old key or
// the new one, both of which the next run holds, and a record changed
// concurrently is read and re-sealed again rather than overwritten. Running
// it again after a crash, or after it completed, is safe.
func (s *Service) ResealAll(ctx context.Context) (ResealReport, error) {
	rep := ResealReport{KeyID: hex.EncodeToString(s.seal.current.id[:])}
	keys, err := listKeys(ctx, s.keysKV)
	if err != nil {
		return rep, unavailable("list key material", err)
	}
	for _, key := range keys {
		changed, found, err := resealEntry(ctx, s.keysKV, key, func(value []byte) ([]byte, bool, error) {
			// Every record of the keys bucket is sealed with its own name as
			// the purpose (see loadShared).
			return s.resealValue(key, value)
		})
		if err != nil {
			return rep, fmt.Errorf("re-seal keys/%s: %w", key, err)
		}
		rep.count(found, changed, "keys/"+key)
	}

	users, err := listKeys(ctx, s.usersKV)
	if err != nil {
		return rep, unavailable("list users", err)
	}
	for _, key := range users {
		if !strings.HasPrefix(key, "u.") {
			continue // markers such as the owner's, which hold no secret
		}
		var fields, stale []string
		changed, _, err := resealEntry(ctx, s.usersKV, key, func(value []byte) ([]byte, bool, error) {
			var err error
			value, fields, stale, err = s.resealUser(value)
			return value, len(stale) > 0, err
		})
		if err != nil {
			return rep, fmt.Errorf("re-seal user record %s: %w", userName(key), err)
		}
		for _, f := range fields {
			rep.count(true, changed && slices.Contains(stale, f), "users/"+userName(key)+"/"+f)
		}
	}
	return rep, nil
}

func (r *ResealReport) count(found, changed bool, name string) {
	switch {
	case changed:
		r.Resealed = append(r.Resealed, name)
	case found:
		r.Current++
	}
}

// userName recovers a user name from its KV key (see userKey) for reports.
func userName(key string) string {
	name, err := hex.DecodeString(strings.TrimPrefix(key, "u."))
	if err != nil {
		return key
	}
	return string(name)
}

// resealValue opens one sealed value and seals it again when it is stale.
func (s *Service) resealValue(purpose string, sealed []byte) ([]byte, bool, error) {
	plain, stale, err := s.seal.openStale(purpose, sealed)
	if err != nil || !stale {
		return sealed, false, err
	}
	return s.seal.seal(purpose, plain), true, nil
}

// resealUser re-seals the sealed fields of one user record. It returns the
// record, the sealed fields present and those that were stale.
func (s *Service) resealUser(rec []byte) (out []byte, fields, stale []string, err error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rec, &raw); err != nil {
		return nil, nil, nil, fmt.Errorf("decode: %w", err)
	}
	var id string
	if err := json.Unmarshal(raw["id"], &id); err != nil || id == "" {
		return nil, nil, nil, errors.New("decode: the record has no user ID")
	}
	for _, f := range sealedUserFields {
		v, ok := raw[f.field]
		if !ok || string(v) == "null" {
			continue
		}
		var sealed []byte
		if err := json.Unmarshal(v, &sealed); err != nil {
			return nil, nil, nil, fmt.Errorf("decode %s: %w", f.field, err)
		}
		if len(sealed) == 0 {
			continue
		}
		fields = append(fields, f.field)
		resealed, changed, err := s.resealValue(f.purposePrefix+"."+id, sealed)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", f.field, err)
		}
		if changed {
			stale = append(stale, f.field)
			raw[f.field], _ = json.Marshal(resealed)
		}
	}
	if len(stale) == 0 {
		return rec, fields, nil, nil
	}
	out, err = json.Marshal(raw)
	return out, fields, stale, err
}

// maxResealAttempts bounds the retries on one record that keeps changing
// under the re-sealing; a user record written this often is a bug.
const maxResealAttempts = 10

// resealEntry applies reseal to the value of key and stores the result if
// it changed, only if the record is still the revision that was read. A
// record deleted meanwhile needs nothing: found is false.
func resealEntry(ctx context.Context, kv jetstream.KeyValue, key string,
	reseal func([]byte) ([]byte, bool, error)) (changed, found bool, err error) {
	for range maxResealAttempts {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, false, nil
		}
		if err != nil {
			return false, false, unavailable("read "+key, err)
		}
		value, changed, err := reseal(e.Value())
		if err != nil || !changed {
			return false, true, err
		}
		_, err = kv.Update(ctx, key, value, e.Revision())
		if err == nil {
			return true, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return false, true, unavailable("store "+key, err)
		}
	}
	return false, true, homemesh.Errorf(homemesh.KindConflict, "the record kept changing while it was re-sealed; run the rotation again")
}

// listKeys returns every key of kv; an empty bucket has none.
func listKeys(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	// The lister stops itself once it has delivered every key. The listing
	// may repeat a key written while it runs.
	slices.Sort(keys)
	return slices.Compact(keys), ctx.Err()
}
