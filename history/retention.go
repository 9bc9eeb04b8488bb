package history

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
)

// retentionField is the configuration field ParseRetention reads.
const retentionField = "history_retention"

// purgeLimit bounds the rows one Purge call removes per table.
const purgeLimit = 5000

// ParseRetention reads retention entries of the form "tier=duration" or
// "kind.tier=duration": tiers are raw, 5m, 1h and (without a kind)
// events; kinds are homemesh.EntityKinds; durations are a whole number
// followed by s, m, h or d, or "forever" (also "0") to keep the tier
// forever. Entries without a kind change the default of every kind;
// a kind's entries override the default for that kind only. Tiers not
// mentioned keep DefaultRetention.
//
// Example: raw=10d 5m=30d 1h=forever events=30d sensor.raw=30d.
func ParseRetention(specs []string) (RetentionPolicy, error) {
	p := DefaultRetention()
	p.Kinds = map[homemesh.EntityKind]Retention{}
	type kindEntry struct {
		kind homemesh.EntityKind
		tier string
		d    time.Duration
	}
	var kindEntries []kindEntry
	seen := map[string]bool{}
	for _, spec := range specs {
		spec = strings.TrimSpace(spec)
		name, value, ok := strings.Cut(spec, "=")
		if !ok {
			return RetentionPolicy{}, homemesh.Invalid(retentionField, "entry %q: want tier=duration, e.g. raw=10d", spec)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if seen[name] {
			return RetentionPolicy{}, homemesh.Invalid(retentionField, "entry %q: %s is set twice", spec, name)
		}
		seen[name] = true
		d, err := parseRetentionDuration(value)
		if err != nil {
			return RetentionPolicy{}, homemesh.Invalid(retentionField, "entry %q: %v", spec, err)
		}
		kind, tier, hasKind := strings.Cut(name, ".")
		if !hasKind {
			tier = kind
			if tier == "events" {
				p.Events = d
				continue
			}
			if !setTier(&p.Default, tier, d) {
				return RetentionPolicy{}, homemesh.Invalid(retentionField, "entry %q: unknown tier %q (raw, 5m, 1h, events)", spec, tier)
			}
			continue
		}
		k := homemesh.EntityKind(kind)
		if !k.Valid() {
			return RetentionPolicy{}, homemesh.Invalid(retentionField, "entry %q: unknown entity kind %q", spec, kind)
		}
		if !setTier(new(Retention), tier, d) {
			return RetentionPolicy{}, homemesh.Invalid(retentionField, "entry %q: unknown tier %q for a kind (raw, 5m, 1h)", spec, tier)
		}
		kindEntries = append(kindEntries, kindEntry{k, tier, d})
	}
	// A kind starts from the final default, whatever the entries' order.
	for _, e := range kindEntries {
		r, ok := p.Kinds[e.kind]
		if !ok {
			r = p.Default
		}
		setTier(&r, e.tier, e.d)
		p.Kinds[e.kind] = r
	}
	return p, nil
}

func setTier(r *Retention, tier string, d time.Duration) bool {
	switch Resolution(tier) {
	case Raw:
		r.Raw = d
	case FiveMinutes:
		r.FiveMinutes = d
	case Hourly:
		r.Hourly = d
	default:
		return false
	}
	return true
}

// parseRetentionDuration reads "forever", "0" or a whole number with a
// unit s, m, h or d.
func parseRetentionDuration(v string) (time.Duration, error) {
	if v == "forever" || v == "0" {
		return 0, nil
	}
	if len(v) < 2 {
		return 0, fmt.Errorf("duration %q: want a number and a unit (s, m, h, d) or forever", v)
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 's':
		unit = time.Second
	case 'm':
		unit = time.Minute
	case 'h':
		unit = time.Hour
	case 'd':
		unit = 24 * time.Hour
	default:
		return 0, fmt.Errorf("duration %q: unit must be s, m, h or d", v)
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("duration %q: want a positive whole number before the unit", v)
	}
	if n > math.MaxInt64/int64(unit) {
		return 0, fmt.Errorf("duration %q is too long; use forever", v)
	}
	return time.Duration(n) * unit, nil
}

// purgeLoop purges expired rows every PurgeInterval until ctx ends.
func (s *Service) purgeLoop(ctx context.Context) {
	tick := time.NewTicker(s.cfg.PurgeInterval)
	defer tick.Stop()
	for {
		s.purge(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// purge removes what the retention no longer keeps, in bounded steps with
// a pause between them so that writers and readers get the store in turn.
func (s *Service) purge(ctx context.Context) {
	now := s.now()
	var total PurgeResult
	for ctx.Err() == nil {
		res, err := s.store.Purge(ctx, now, s.cfg.Retention, purgeLimit)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("history purge failed; retrying at the next interval", "err", err)
			}
			return
		}
		s.metrics.purged.WithLabelValues("points").Add(float64(res.Points))
		s.metrics.purged.WithLabelValues("stats").Add(float64(res.Stats))
		s.metrics.purged.WithLabelValues("events").Add(float64(res.Events))
		s.metrics.purged.WithLabelValues("ledger").Add(float64(res.Ledger))
		total.Points += res.Points
		total.Stats += res.Stats
		total.Events += res.Events
		total.Ledger += res.Ledger
		if !res.More {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	if total.Points+total.Stats+total.Events > 0 {
		s.log.Info("history purged", "points", total.Points, "stats", total.Stats, "events", total.Events, "ledger", total.Ledger)
	}
}
