package gateway

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
)

// listAudit answers GET /api/v1/audit with one page of the audit log. The
// auth service checks the caller's role again with their token.
func (g *Gateway) listAudit(w http.ResponseWriter, r *http.Request, c caller) {
	q, err := parseAuditQuery(r.URL.Query())
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	page, err := g.auth.ListAudit(r.Context(), c.token, q)
	g.reply(w, r, page, err)
}

// parseAuditQuery reads the query of GET /api/v1/audit strictly: only the
// known parameters, each at most once and never empty, times in RFC 3339.
// Errors name the parameter.
func parseAuditQuery(v url.Values) (auth.AuditQuery, error) {
	var q auth.AuditQuery
	if err := strictQuery(v, "from", "to", "action", "after", "limit"); err != nil {
		return q, err
	}
	var err error
	if s := v.Get("from"); s != "" {
		if q.From, err = parseTime("from", s); err != nil {
			return q, err
		}
	}
	if s := v.Get("to"); s != "" {
		if q.To, err = parseTime("to", s); err != nil {
			return q, err
		}
	}
	q.Action = v.Get("action")
	if s := v.Get("after"); s != "" {
		if q.AfterSeq, err = strconv.ParseUint(s, 10, 64); err != nil {
			return q, homemesh.Invalid("after", "must be a record sequence number (the next of the previous page)")
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, homemesh.Invalid("limit", "must be a whole number from 1")
		}
		q.Limit = n
	}
	return q, q.Check()
}

// strictQuery checks that v holds only the known parameters, each once and
// never empty. The error names the parameter.
func strictQuery(v url.Values, known ...string) error {
	for name, values := range v {
		switch {
		case name == "":
			return homemesh.Invalid("query", "a parameter without a name")
		case !slices.Contains(known, name):
			if len(name) > 64 {
				name = name[:64]
			}
			return homemesh.Invalid(strings.ToValidUTF8(name, "?"), "unknown query parameter")
		case len(values) != 1:
			return homemesh.Invalid(name, "must be given once")
		case values[0] == "":
			return homemesh.Invalid(name, "must not be empty")
		}
	}
	return nil
}

// parseTime reads an RFC 3339 time from the query parameter field.
func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, homemesh.Invalid(field, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
	}
	return t, nil
}
