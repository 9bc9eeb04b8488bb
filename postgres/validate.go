package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// Times a store accepts: partitions are named by date, and PostgreSQL's
// timestamps end long before Go's.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// maxText bounds every identifier, state and kind a store keeps.
const maxText = 1024

// checkText rejects what PostgreSQL's text type cannot hold (NUL bytes,
// invalid UTF-8) and absurd lengths.
func checkText(field, s string, required bool) *homemesh.Error {
	switch {
	case required && s == "":
		return homemesh.Invalid(field, "is empty")
	case len(s) > maxText:
		return homemesh.Invalid(field, "is %d bytes long; at most %d are kept", len(s), maxText)
	case !utf8.ValidString(s):
		return homemesh.Invalid(field, "is not valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return homemesh.Invalid(field, "contains a NUL byte")
	}
	return nil
}

func checkTime(field string, t time.Time) *homemesh.Error {
	if t.Before(minTime) || !t.Before(maxTime) {
		return homemesh.Invalid(field, "%v is outside the years 1970 to 9999", t)
	}
	return nil
}

// validateBatch checks the whole batch before anything is stored, so that a
// bad message fails the batch with an error naming the field instead of
// storing part of it.
func validateBatch(b history.Batch) error {
	if err := checkText("home", b.Home, true); err != nil {
		return err
	}
	if err := checkText("stream", b.Stream, true); err != nil {
		return err
	}
	// Field paths are built only for the culprit: formatting one per
	// point would cost more than the checks.
	for i, m := range b.Messages {
		if m.Seq == 0 || m.Seq > math.MaxInt64 {
			return homemesh.Invalid(fmt.Sprintf("messages[%d].seq", i), "%d is not a stream sequence", m.Seq)
		}
		for j, p := range m.Points {
			if err := validatePoint(p); err != nil {
				err.Field = fmt.Sprintf("messages[%d].points[%d].%s", i, j, err.Field)
				return err
			}
		}
		for j, e := range m.Events {
			if err := validateEvent(e); err != nil {
				err.Field = fmt.Sprintf("messages[%d].events[%d].%s", i, j, err.Field)
				return err
			}
		}
	}
	return nil
}

func validatePoint(p history.Point) *homemesh.Error {
	if err := checkText("entity", p.Entity, true); err != nil {
		return err
	}
	if err := checkText("device", p.Device, false); err != nil {
		return err
	}
	if err := checkText("kind", string(p.Kind), false); err != nil {
		return err
	}
	if err := checkText("state", p.State, false); err != nil {
		return err
	}
	if err := checkTime("time", p.Time); err != nil {
		return err
	}
	if p.Numeric && (math.IsNaN(p.Value) || math.IsInf(p.Value, 0)) {
		return homemesh.Invalid("value", "%v is not a finite number", p.Value)
	}
	if len(p.Attrs) > 0 {
		if trimmed := bytes.TrimLeft(p.Attrs, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(p.Attrs) {
			return homemesh.Invalid("attrs", "is not a JSON object")
		}
	}
	return nil
}

func validateEvent(e history.Event) *homemesh.Error {
	if err := checkText("id", e.ID, true); err != nil {
		return err
	}
	if err := checkText("kind", e.Kind, true); err != nil {
		return err
	}
	if err := checkText("device", e.Device, false); err != nil {
		return err
	}
	if err := checkText("entity", e.Entity, false); err != nil {
		return err
	}
	if err := checkTime("time", e.Time); err != nil {
		return err
	}
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return homemesh.Invalid("data", "is not valid JSON")
	}
	return nil
}
