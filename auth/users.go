package auth

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MaxScopeItems bounds each list of a Scope, so a user record and every
// access token carrying it stay small.
const MaxScopeItems = 64

// User is what the service tells about a person: never a password hash or
// any other secret.
type User struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	Scope     Scope     `json:"scope"`
	CreatedAt time.Time `json:"created_at"`
}

// NewUser is a user to create.
type NewUser struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
	Scope    *Scope `json:"scope,omitempty"`
}

// UserUpdate changes a user. Nil fields stay as they are; a non-nil Scope
// replaces the whole scope (the zero Scope lifts every limit).
type UserUpdate struct {
	Role     *string `json:"role,omitempty"`
	Scope    *Scope  `json:"scope,omitempty"`
	Password *string `json:"password,omitempty"`
}

func (u user) public() User {
	return User{ID: u.ID, Username: u.Username, Role: u.Role, Scope: u.Scope.clone(), CreatedAt: u.CreatedAt}
}

func (sc Scope) clone() Scope {
	return Scope{Rooms: slices.Clone(sc.Rooms), Kinds: slices.Clone(sc.Kinds), Entities: slices.Clone(sc.Entities)}
}

// IsZero reports whether sc limits nothing.
func (sc Scope) IsZero() bool {
	return len(sc.Rooms) == 0 && len(sc.Kinds) == 0 && len(sc.Entities) == 0
}

// ValidateScope checks a scope: at most MaxScopeItems entries per list,
// rooms and entities valid identifiers, kinds homemesh entity kinds, no
// entry twice. The error names the offending entry under field, e.g.
// "scope.kinds[1]".
func ValidateScope(field string, sc Scope) error {
	lists := []struct {
		name  string
		items []string
		check func(string) error
	}{
		{"rooms", sc.Rooms, func(v string) error {
			if !homemesh.ValidID(v) {
				return fmt.Errorf("must be a room ID: 1 to %d characters of a-z, 0-9, _ and -", homemesh.MaxIDLen)
			}
			return nil
		}},
		{"kinds", sc.Kinds, func(v string) error {
			if !homemesh.EntityKind(v).Valid() {
				return errors.New("must be an entity kind (light, switch, lock, …)")
			}
			return nil
		}},
		{"entities", sc.Entities, func(v string) error {
			if !homemesh.ValidID(v) {
				return fmt.Errorf("must be an entity ID: 1 to %d characters of a-z, 0-9, _ and -", homemesh.MaxIDLen)
			}
			return nil
		}},
	}
	for _, l := range lists {
		if len(l.items) > MaxScopeItems {
			return homemesh.Invalid(field+"."+l.name, "at most %d entries", MaxScopeItems)
		}
		for i, v := range l.items {
			name := fmt.Sprintf("%s.%s[%d]", field, l.name, i)
			if err := l.check(v); err != nil {
				return homemesh.Invalid(name, "%v", err)
			}
			if slices.Contains(l.items[:i], v) {
				return homemesh.Invalid(name, "listed twice")
			}
		}
	}
	return nil
}

// checkRole rejects anything but the four roles.
func checkRole(field, role string) error {
	if !validRole(role) {
		return homemesh.Invalid(field, "must be one of owner, admin, member, guest")
	}
	return nil
}

// mayManage reports whether a user with role actor may create, change or
// delete a user with role target. Owners manage everyone; admins manage
// members and guests; members and guests manage nobody.
func mayManage(actor, target string) bool {
	switch actor {
	case RoleOwner:
		return true
	case RoleAdmin:
		return target == RoleMember || target == RoleGuest
	}
	return false
}

var errLastOwner = homemesh.Errorf(homemesh.KindConflict, "a home must keep at least one owner")

// scopeDetail renders a scope for an audit entry: what the user may reach,
// nothing secret.
func scopeDetail(sc Scope) string {
	if sc.IsZero() {
		return "unrestricted"
	}
	raw, _ := json.Marshal(sc)
	return string(raw)
}

// deny audits a refused user-management attempt and returns err.
func (s *Service) deny(ctx context.Context, action string, actor Claims, target string, err error) error {
	_ = s.Audit(ctx, AuditEntry{Action: action, Outcome: OutcomeDenied, Actor: actor.Username, ActorID: actor.UserID, Target: target})
	return err
}

func (s *Service) handleCreateUser(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[createUserRequest](s, ctx, msg, RoleOwner, RoleAdmin)
	if err != nil {
		return nil, err
	}
	name, err := normalizeUsername("username", req.Username)
	if err != nil {
		return nil, err
	}
	if err := checkRole("role", req.Role); err != nil {
		return nil, err
	}
	var scope Scope
	if req.Scope != nil {
		scope = req.Scope.clone()
		if err := ValidateScope("scope", scope); err != nil {
			return nil, err
		}
	}
	if err := checkPassword("password", req.Password); err != nil {
		return nil, err
	}
	if !mayManage(actor.Role, req.Role) {
		return nil, s.deny(ctx, AuditUserCreated, actor, name,
			homemesh.Errorf(homemesh.KindPermission, "your role may not create a user with the role %s", req.Role))
	}
	release, err := s.hashLimit(ctx)
	if err != nil {
		return nil, err
	}
	hash := hashPassword(req.Password)
	release()
	u := user{ID: homemesh.RandomID(20), Username: name, Role: req.Role, Scope: scope, PasswordHash: hash, CreatedAt: time.Now().UTC()}
	rec, _ := json.Marshal(u)
	if _, err := s.usersKV.Create(ctx, userKey(name), rec); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, &homemesh.Error{Kind: homemesh.KindConflict, Field: "username", Message: "a user with this name exists"}
		}
		return nil, unavailable("store user", err)
	}
	if u.Role == RoleOwner {
		if err := s.changeOwners(ctx, func(set []string) ([]string, error) { return addName(set, name), nil }); err != nil {
			// The guard then knows one owner too few, which only makes the
			// last-owner check stricter.
			s.log.Error("cannot record a new owner", "username", name, "err", err)
		}
	}
	s.log.Info("user created", "username", name, "user_id", u.ID, "role", u.Role, "by", actor.Username)
	_ = s.Audit(ctx, AuditEntry{Action: AuditUserCreated, Outcome: OutcomeSuccess, Actor: actor.Username, ActorID: actor.UserID,
		Target: name, Details: map[string]string{"role": u.Role, "scope": scopeDetail(u.Scope)}})
	return u.public(), nil
}

func (s *Service) handleListUsers(ctx context.Context, msg *nats.Msg) (any, error) {
	req, _, err := decodeAuthorized[listUsersRequest](s, ctx, msg, RoleOwner, RoleAdmin)
	if err != nil {
		return nil, err
	}
	names, err := s.usernames(ctx)
	if err != nil {
		return nil, err
	}
	// One page per reply, in name order: each user may carry a scope of a
	// few kilobytes, and a reply must stay under the bus's message size.
	out, more, err := readPage(names, req.After, userPage, func(name string) (User, bool, error) {
		u, found, err := s.getUser(ctx, name)
		return u.public(), found, err
	})
	if err != nil {
		return nil, err
	}
	return listUsersReply{Users: out, More: more}, nil
}

// userPage bounds one list reply.
const userPage = 100

// usernames lists every user name, sorted.
func (s *Service) usernames(ctx context.Context) ([]string, error) {
	lister, err := s.usersKV.ListKeys(ctx)
	if err != nil {
		return nil, unavailable("list users", err)
	}
	var names []string
	for key := range lister.Keys() {
		hexName, ok := strings.CutPrefix(key, "u.")
		if !ok {
			continue
		}
		if name, err := decodeHexName(hexName); err == nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

func decodeHexName(h string) (string, error) {
	b, err := hex.DecodeString(h)
	return string(b), err
}

func (s *Service) handleGetUser(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[userRequest](s, ctx, msg, everyRole...)
	if err != nil {
		return nil, err
	}
	name, err := normalizeUsername("username", req.Username)
	if err != nil {
		return nil, err
	}
	// Everyone may read their own profile; only owners and admins may read
	// anyone else's, so members cannot even learn which names exist.
	if name != actor.Username && actor.Role != RoleOwner && actor.Role != RoleAdmin {
		return nil, homemesh.Errorf(homemesh.KindPermission, "your role may only read your own profile")
	}
	u, found, err := s.getUser(ctx, name)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, homemesh.Errorf(homemesh.KindNotFound, "no user %s", name)
	}
	return u.public(), nil
}

func (s *Service) handleUpdateUser(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[updateUserRequest](s, ctx, msg, RoleOwner, RoleAdmin)
	if err != nil {
		return nil, err
	}
	name, err := normalizeUsername("username", req.Username)
	if err != nil {
		return nil, err
	}
	if req.Role == nil && req.Scope == nil && req.Password == nil {
		return nil, homemesh.Invalid("body", "nothing to change: give role, scope or password")
	}
	if req.Role != nil {
		if err := checkRole("role", *req.Role); err != nil {
			return nil, err
		}
	}
	if req.Scope != nil {
		if err := ValidateScope("scope", *req.Scope); err != nil {
			return nil, err
		}
	}
	var hash string
	if req.Password != nil {
		if err := checkPassword("password", *req.Password); err != nil {
			return nil, err
		}
	}
	// A demotion takes the name out of the owner set before the record is
	// written, so that of two owners demoting each other at once one is
	// refused; a write that then fails, or loses the race and is decided
	// again, puts the name back first.
	var u user
	var details map[string]string
	var oldRole string
	demoted := false
	undemote := func() {
		if demoted {
			s.restoreOwner(ctx, name)
			demoted = false
		}
	}
	err = casUpdate(ctx, s.usersKV, userKey(name), "read user", "store user", func(cur []byte, exists bool) ([]byte, error) {
		undemote()
		if !exists {
			return nil, homemesh.Errorf(homemesh.KindNotFound, "no user %s", name)
		}
		u = user{}
		if err := json.Unmarshal(cur, &u); err != nil {
			return nil, fmt.Errorf("decode user %q: %w", name, err)
		}
		if !mayManage(actor.Role, u.Role) || (req.Role != nil && !mayManage(actor.Role, *req.Role)) {
			return nil, s.deny(ctx, AuditUserChanged, actor, name,
				homemesh.Errorf(homemesh.KindPermission, "your role may not change this user or grant this role"))
		}
		if req.Password != nil && hash == "" {
			release, err := s.hashLimit(ctx)
			if err != nil {
				return nil, err
			}
			hash = hashPassword(*req.Password)
			release()
		}
		oldRole = u.Role
		details = map[string]string{}
		if req.Role != nil {
			u.Role = *req.Role
			details["role"] = u.Role
		}
		if req.Scope != nil {
			u.Scope = req.Scope.clone()
			details["scope"] = scopeDetail(u.Scope)
		}
		if hash != "" {
			u.PasswordHash = hash
			details["password"] = "reset"
		}
		if oldRole == RoleOwner && u.Role != RoleOwner {
			if err := s.changeOwners(ctx, func(set []string) ([]string, error) { return removeName(set, name) }); err != nil {
				return nil, err
			}
			demoted = true
		}
		return json.Marshal(u)
	})
	if err != nil {
		undemote()
		return nil, err
	}
	if oldRole != RoleOwner && u.Role == RoleOwner {
		s.restoreOwner(ctx, name)
	}
	// Tokens carry the role and scope, and a reset password must end
	// every session: the change takes effect at once, everywhere.
	if _, err := s.RevokeUserTokens(ctx, name); err != nil {
		return nil, err
	}
	s.log.Info("user changed", "username", name, "user_id", u.ID, "role", u.Role, "by", actor.Username)
	_ = s.Audit(ctx, AuditEntry{Action: AuditUserChanged, Outcome: OutcomeSuccess, Actor: actor.Username, ActorID: actor.UserID,
		Target: name, Details: details})
	return u.public(), nil
}

func (s *Service) handleDeleteUser(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[userRequest](s, ctx, msg, RoleOwner, RoleAdmin)
	if err != nil {
		return nil, err
	}
	name, err := normalizeUsername("username", req.Username)
	if err != nil {
		return nil, err
	}
	u, found, err := s.getUser(ctx, name)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, homemesh.Errorf(homemesh.KindNotFound, "no user %s", name)
	}
	if !mayManage(actor.Role, u.Role) {
		return nil, s.deny(ctx, AuditUserDeleted, actor, name,
			homemesh.Errorf(homemesh.KindPermission, "your role may not delete this user"))
	}
	if u.Role == RoleOwner {
		if err := s.changeOwners(ctx, func(set []string) ([]string, error) { return removeName(set, name) }); err != nil {
			return nil, err
		}
	}
	// Revoke before deleting: revocation needs the record, and a token
	// must never outlive its user.
	if _, err := s.RevokeUserTokens(ctx, name); err != nil {
		if u.Role == RoleOwner {
			s.restoreOwner(ctx, name)
		}
		return nil, err
	}
	if err := s.usersKV.Purge(ctx, userKey(name)); err != nil {
		if u.Role == RoleOwner {
			s.restoreOwner(ctx, name)
		}
		return nil, unavailable("delete user", err)
	}
	s.log.Info("user deleted", "username", name, "user_id", u.ID, "by", actor.Username)
	_ = s.Audit(ctx, AuditEntry{Action: AuditUserDeleted, Outcome: OutcomeSuccess, Actor: actor.Username, ActorID: actor.UserID,
		Target: name, Details: map[string]string{"role": u.Role}})
	return struct{}{}, nil
}

func (s *Service) handleChangePassword(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[changePasswordRequest](s, ctx, msg, everyRole...)
	if err != nil {
		return nil, err
	}
	if err := checkPassword("new_password", req.NewPassword); err != nil {
		return nil, err
	}
	source, err := throttleSource("source", req.Source)
	if err != nil {
		return nil, err
	}
	name := actor.Username
	// The current password is checked like a login, throttle included, so
	// a stolen access token cannot be used to guess it.
	if err := s.checkThrottle(ctx, name, source); err != nil {
		return nil, err
	}
	u, err := s.actorRecord(ctx, actor)
	if err != nil {
		return nil, err
	}
	release, err := s.hashLimit(ctx)
	if err != nil {
		return nil, err
	}
	ok := len(req.CurrentPassword) <= MaxPasswordLen && verifyPassword(u.PasswordHash, req.CurrentPassword)
	var hash string
	if ok {
		hash = hashPassword(req.NewPassword)
	}
	release()
	if !ok {
		s.recordLoginFailure(ctx, name, source)
		s.log.Warn("password change refused: wrong current password", "username", name)
		_ = s.Audit(ctx, AuditEntry{Action: AuditUserChanged, Outcome: OutcomeFailure, Actor: name, ActorID: actor.UserID,
			Target: name, Details: map[string]string{"password": "wrong current password"}})
		return nil, &homemesh.Error{Kind: homemesh.KindPermission, Field: "current_password", Message: "the current password is wrong"}
	}
	cur, err := s.updateUser(ctx, name, u.ID, func(cur *user) error {
		cur.PasswordHash = hash
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Every other session ends; this one continues with fresh tokens.
	nb, err := s.RevokeUserTokens(ctx, name)
	if err != nil {
		return nil, err
	}
	cur.TokensNotBefore = nb
	tokens, err := s.issue(ctx, cur, "", time.Now())
	if err != nil {
		return nil, err
	}
	s.log.Info("password changed", "username", name, "user_id", u.ID)
	_ = s.Audit(ctx, AuditEntry{Action: AuditUserChanged, Outcome: OutcomeSuccess, Actor: name, ActorID: u.ID,
		Target: name, Details: map[string]string{"password": "changed"}})
	return tokens, nil
}

// ownersKey holds, in the users bucket, the names of the home's owners. It
// is changed with compare-and-set only, so concurrent demotions and
// deletions cannot leave a home without an owner.
const ownersKey = "owners"

type ownersRecord struct {
	Usernames []string `json:"usernames"`
}

// changeOwners applies fn to the set of owner names with compare-and-set,
// building the set from the user records the first time.
func (s *Service) changeOwners(ctx context.Context, fn func([]string) ([]string, error)) error {
	return casUpdate(ctx, s.usersKV, ownersKey, "read owners", "store owners", func(cur []byte, exists bool) ([]byte, error) {
		var rec ownersRecord
		if exists {
			if err := json.Unmarshal(cur, &rec); err != nil {
				return nil, fmt.Errorf("decode owners: %w", err)
			}
		} else {
			var err error
			if rec.Usernames, err = s.scanOwners(ctx); err != nil {
				return nil, err
			}
		}
		next, err := fn(slices.Clone(rec.Usernames))
		if err != nil {
			return nil, err
		}
		return json.Marshal(ownersRecord{Usernames: next})
	})
}

// restoreOwner puts name back into the owner set after a change that
// removed it failed.
func (s *Service) restoreOwner(ctx context.Context, name string) {
	if err := s.changeOwners(ctx, func(set []string) ([]string, error) { return addName(set, name), nil }); err != nil {
		s.log.Error("cannot record an owner", "username", name, "err", err)
	}
}

func (s *Service) scanOwners(ctx context.Context) ([]string, error) {
	names, err := s.usernames(ctx)
	if err != nil {
		return nil, err
	}
	var owners []string
	for _, name := range names {
		u, found, err := s.getUser(ctx, name)
		if err != nil {
			return nil, err
		}
		if found && u.Role == RoleOwner {
			owners = append(owners, name)
		}
	}
	return owners, nil
}

func addName(set []string, name string) []string {
	if slices.Contains(set, name) {
		return set
	}
	set = append(set, name)
	slices.Sort(set)
	return set
}

// removeName drops name from the owner set, refusing to empty it.
func removeName(set []string, name string) ([]string, error) {
	set = slices.DeleteFunc(set, func(n string) bool { return n == name })
	if len(set) == 0 {
		return nil, errLastOwner
	}
	return set, nil
}

// readPage reads the page of at most size of the sorted keys that follows
// after ("" for the first page), with read (which skips a key deleted
// since it was listed by reporting it not found), and says whether more
// follow it.
func readPage[T any](keys []string, after string, size int, read func(key string) (T, bool, error)) ([]T, bool, error) {
	start, _ := slices.BinarySearch(keys, after)
	if start < len(keys) && keys[start] == after {
		start++
	}
	keys = keys[start:]
	more := len(keys) > size
	if more {
		keys = keys[:size]
	}
	out := []T{}
	for _, key := range keys {
		item, found, err := read(key)
		if err != nil {
			return nil, false, err
		}
		if found {
			out = append(out, item)
		}
	}
	return out, more, nil
}
