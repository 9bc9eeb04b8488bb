package broker

import "strings"

// maxLevels bounds the topic levels the ACL looks at, so that a hostile
// filter of thousands of empty levels costs nothing noticeable.
const maxLevels = 128

// filterSubset reports whether every topic name matched by the MQTT filter
// requested is also matched by the MQTT filter allowed. A topic name (no
// wildcards) is a filter that matches only itself, so the same test decides
// publishes. It follows MQTT's matching rules: '+' matches exactly one level,
// a trailing '#' matches the parent level and everything below it, and a
// wildcard in the first level never matches a topic that starts with '$'.
// A shared subscription ("$share/<group>/<filter>") is judged by its filter.
// Anything malformed, and anything under $SYS, is not a subset.
func filterSubset(allowed, requested string) bool {
	if !validFilter(allowed) || !validFilter(requested) {
		return false
	}
	if r, ok := stripShare(requested); ok {
		requested = r
	} else if isShare(requested) {
		return false
	}
	if isShare(allowed) {
		return false // a grant names topics, not share groups
	}
	if isSys(requested) {
		return false
	}
	a := strings.Split(allowed, "/")
	r := strings.Split(requested, "/")
	if len(a) > maxLevels || len(r) > maxLevels {
		return false
	}
	for i := 0; i < len(a); i++ {
		if i == 0 && (a[0] == "+" || a[0] == "#") && strings.HasPrefix(r[0], "$") {
			return false // [MQTT-4.7.2-1]: wildcards do not reach $ topics
		}
		if a[i] == "#" {
			return true
		}
		if i >= len(r) {
			// requested is shorter: only "parent/#" also matches the parent.
			return i == len(a)-1 && a[i] == "#"
		}
		switch {
		case r[i] == "#":
			return false // allowed has no '#' here, so it cannot cover one
		case a[i] == "+":
			continue
		case r[i] == "+":
			return false // a single literal level cannot cover every level
		case a[i] != r[i]:
			return false
		}
	}
	return len(a) == len(r)
}

// Permits reports whether the allow list permits topic (a topic name or a
// filter) by the rules the broker enforces on publishes and subscriptions.
func Permits(allow []string, topic string) bool {
	for _, a := range allow {
		if filterSubset(a, topic) {
			return true
		}
	}
	return false
}

// validFilter reports whether f is a well-formed MQTT topic filter: not
// empty, no NUL, '#' only as the whole last level, '+' only as a whole level.
func validFilter(f string) bool {
	if f == "" || len(f) > 65535 || strings.IndexByte(f, 0) >= 0 {
		return false
	}
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '#':
			if i != len(f)-1 || (i > 0 && f[i-1] != '/') {
				return false
			}
		case '+':
			if (i > 0 && f[i-1] != '/') || (i < len(f)-1 && f[i+1] != '/') {
				return false
			}
		}
	}
	return true
}

// isShare reports whether f starts with the shared-subscription level.
func isShare(f string) bool {
	first, _, _ := strings.Cut(f, "/")
	return strings.EqualFold(first, "$share")
}

// stripShare returns the filter inside "$share/<group>/<filter>". The group
// may hold no wildcard and the inner filter may not be empty.
func stripShare(f string) (string, bool) {
	if !isShare(f) {
		return "", false
	}
	_, rest, ok := strings.Cut(f, "/")
	if !ok {
		return "", false
	}
	group, inner, ok := strings.Cut(rest, "/")
	if !ok || group == "" || strings.ContainsAny(group, "+#") || inner == "" {
		return "", false
	}
	return inner, true
}

// isSys reports whether a topic or filter is under $SYS, which devices may
// never touch whatever their grant says.
func isSys(f string) bool {
	first, _, _ := strings.Cut(f, "/")
	return strings.EqualFold(first, "$SYS")
}
