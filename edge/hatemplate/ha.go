package hatemplate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// MaxRegexLen bounds a regular expression given to the regex filters. Go's
// regexp runs in linear time, so the length is the only cost to bound.
const MaxRegexLen = 1024

func errValue(format string, args ...any) *exec.Value {
	return exec.AsValue(fmt.Errorf(format, args...))
}

// arg returns positional argument i, or the keyword argument name.
func arg(p *exec.VarArgs, i int, name string) (*exec.Value, bool) {
	if v, ok := p.KwArgs[name]; ok {
		return v, true
	}
	if i < len(p.Args) {
		return p.Args[i], true
	}
	return nil, false
}

func haFilters() map[string]exec.FilterFunction {
	return map[string]exec.FilterFunction{
		"float": func(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
			return toFloat("float", in, p)
		},
		"int": func(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
			return toInt(in, p)
		},
		"bool": func(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
			return toBool(in, p)
		},
		"round":      filterRound,
		"multiply":   filterMultiply,
		"is_defined": filterIsDefined,
		"tojson":     filterToJSON,
		"to_json":    filterToJSON,
		"from_json":  filterFromJSON,
		"is_number": func(_ *exec.Evaluator, in *exec.Value, _ *exec.VarArgs) *exec.Value {
			return exec.AsValue(isNumber(in))
		},
		"replace":      filterReplace,
		"regex_match":  func(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value { return regexTest(in, p, true) },
		"regex_search": func(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value { return regexTest(in, p, false) },
		"regex_findall": func(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
			return regexFindall(in, p, false)
		},
		"regex_findall_index": func(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
			return regexFindall(in, p, true)
		},
		"regex_replace": filterRegexReplace,
		"as_timestamp":  func(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value { return asTimestamp(in, p) },
		"timestamp_local": func(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
			return timestampISO(in, p, time.Local)
		},
		"timestamp_utc": func(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
			return timestampISO(in, p, time.UTC)
		},
		"timestamp_custom": filterTimestampCustom,
		"iif":              func(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value { return iif(in, p) },
	}
}

func haTests() map[string]exec.TestFunction {
	return map[string]exec.TestFunction{
		"is_number": func(_ *exec.Context, in *exec.Value, _ *exec.VarArgs) (bool, error) { return isNumber(in), nil },
		"match": func(_ *exec.Context, in *exec.Value, p *exec.VarArgs) (bool, error) {
			v := regexTest(in, p, true)
			if v.IsError() {
				return false, v
			}
			return v.IsTrue(), nil
		},
		"search": func(_ *exec.Context, in *exec.Value, p *exec.VarArgs) (bool, error) {
			v := regexTest(in, p, false)
			if v.IsError() {
				return false, v
			}
			return v.IsTrue(), nil
		},
	}
}

// haGlobals are the functions HA offers beside their filter forms.
func haGlobals() map[string]any {
	first := func(p *exec.VarArgs) (*exec.Value, *exec.VarArgs) {
		rest := &exec.VarArgs{KwArgs: p.KwArgs}
		if len(p.Args) == 0 {
			return exec.AsValue(nil), rest
		}
		rest.Args = p.Args[1:]
		return p.Args[0], rest
	}
	return map[string]any{
		"float": func(p *exec.VarArgs) *exec.Value { in, rest := first(p); return toFloat("float", in, rest) },
		"int":   func(p *exec.VarArgs) *exec.Value { in, rest := first(p); return toInt(in, rest) },
		"bool":  func(p *exec.VarArgs) *exec.Value { in, rest := first(p); return toBool(in, rest) },
		"iif":   func(p *exec.VarArgs) *exec.Value { in, rest := first(p); return iif(in, rest) },
		"as_timestamp": func(p *exec.VarArgs) *exec.Value {
			in, rest := first(p)
			return asTimestamp(in, rest)
		},
		"is_number": func(p *exec.VarArgs) *exec.Value { in, _ := first(p); return exec.AsValue(isNumber(in)) },
		"zip":       zipFunc,
	}
}

func parseFloat(in *exec.Value) (float64, bool) {
	switch {
	case in == nil || in.IsNil() || in.IsError():
		return 0, false
	case in.IsBool():
		if in.Bool() {
			return 1, true
		}
		return 0, true
	case in.IsFloat() || in.IsInteger():
		return in.Float(), true
	case in.IsString():
		s := strings.TrimSpace(in.String())
		f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
		if err != nil || strings.HasPrefix(strings.ToLower(s), "0x") {
			return 0, false
		}
		return f, true
	}
	return 0, false
}

func isNumber(in *exec.Value) bool {
	if in.IsBool() {
		return false
	}
	f, ok := parseFloat(in)
	return ok && !math.IsNaN(f) && !math.IsInf(f, 0)
}

func toFloat(name string, in *exec.Value, p *exec.VarArgs) *exec.Value {
	if f, ok := parseFloat(in); ok {
		return exec.AsValue(f)
	}
	if d, ok := arg(p, 0, "default"); ok {
		return d
	}
	return errValue("%s got invalid input %q and no default was specified", name, short(in))
}

func toInt(in *exec.Value, p *exec.VarArgs) *exec.Value {
	base := 10
	if b, ok := arg(p, 1, "base"); ok {
		base = b.Integer()
		if base < 2 || base > 36 {
			return errValue("int: base %d is out of range", base)
		}
	}
	if in != nil && in.IsString() {
		s := strings.TrimSpace(in.String())
		if base != 10 {
			s = strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(s), "0x"), "0b")
		}
		if i, err := strconv.ParseInt(s, base, 64); err == nil {
			return exec.AsValue(int(i))
		}
	}
	if f, ok := parseFloat(in); ok && !math.IsNaN(f) && !math.IsInf(f, 0) && math.Abs(f) < 1<<62 {
		return exec.AsValue(int(f))
	}
	if d, ok := arg(p, 0, "default"); ok {
		return d
	}
	return errValue("int got invalid input %q and no default was specified", short(in))
}

func toBool(in *exec.Value, p *exec.VarArgs) *exec.Value {
	switch {
	case in.IsBool():
		return exec.AsValue(in.Bool())
	case in.IsNumber():
		return exec.AsValue(in.Float() != 0)
	case in.IsString():
		switch strings.ToLower(strings.TrimSpace(in.String())) {
		case "1", "true", "yes", "on", "enable":
			return exec.AsValue(true)
		case "0", "false", "no", "off", "disable":
			return exec.AsValue(false)
		}
	}
	if d, ok := arg(p, 0, "default"); ok {
		return d
	}
	return errValue("bool got invalid input %q and no default was specified", short(in))
}

func short(in *exec.Value) string {
	if in == nil {
		return "None"
	}
	s := in.String()
	if in.IsNil() {
		s = "None"
	}
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

func filterRound(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
	f, ok := parseFloat(in)
	if !ok {
		if d, ok := arg(p, 2, "default"); ok {
			return d
		}
		return errValue("round got invalid input %q and no default was specified", short(in))
	}
	precision := 0
	if v, ok := arg(p, 0, "precision"); ok {
		precision = v.Integer()
	}
	if precision < -15 || precision > 15 {
		return errValue("round: precision %d is out of range", precision)
	}
	method := "common"
	if v, ok := arg(p, 1, "method"); ok {
		method = v.String()
	}
	scale := math.Pow(10, float64(precision))
	x := f * scale
	switch method {
	case "common":
		x = math.RoundToEven(x)
	case "half":
		x = math.RoundToEven(x*2) / 2
	case "floor":
		x = math.Floor(x)
	case "ceil":
		x = math.Ceil(x)
	default:
		return errValue("round: unknown method %q", method)
	}
	if method == "half" {
		return exec.AsValue(x / scale)
	}
	x /= scale
	if precision == 0 && math.Abs(x) < 1<<62 {
		return exec.AsValue(int(x))
	}
	return exec.AsValue(x)
}

func filterMultiply(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
	amount, ok := arg(p, 0, "amount")
	if !ok {
		return errValue("multiply: amount is missing")
	}
	f, ok1 := parseFloat(in)
	m, ok2 := parseFloat(amount)
	if !ok1 || !ok2 {
		if d, ok := arg(p, 1, "default"); ok {
			return d
		}
		return errValue("multiply got invalid input %q and no default was specified", short(in))
	}
	if in.IsInteger() && amount.IsInteger() {
		return exec.AsValue(in.Integer() * amount.Integer())
	}
	return exec.AsValue(f * m)
}

func filterIsDefined(_ *exec.Evaluator, in *exec.Value, _ *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	if in.IsNil() {
		return errValue("value is undefined")
	}
	return in
}

func filterToJSON(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if v, ok := p.KwArgs["indent"]; ok && v.Integer() > 0 {
		enc.SetIndent("", strings.Repeat(" ", min(v.Integer(), 8)))
	}
	if err := enc.Encode(in.ToGoSimpleType(false)); err != nil {
		return errValue("tojson: %v", err)
	}
	if buf.Len() > MaxStringLen {
		return errValue("tojson: result is longer than %d bytes", MaxStringLen)
	}
	return exec.AsSafeValue(strings.TrimSuffix(buf.String(), "\n"))
}

func filterFromJSON(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	v, ok := DecodeJSON([]byte(in.String()))
	if !ok {
		if d, ok := arg(p, 0, "default"); ok {
			return d
		}
		return errValue("from_json got invalid input %q", short(in))
	}
	return exec.AsValue(v)
}

func filterReplace(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	if len(p.Args) < 2 {
		return errValue("replace: expected old and new strings")
	}
	s, old, repl := in.String(), p.Args[0].String(), p.Args[1].String()
	n := -1
	if c, ok := arg(p, 2, "count"); ok && c.IsInteger() {
		n = c.Integer()
	}
	count := strings.Count(s, old)
	if n >= 0 && n < count {
		count = n
	}
	if len(s)+count*(len(repl)-len(old)) > MaxStringLen {
		return errValue("replace: result is longer than %d bytes", MaxStringLen)
	}
	return exec.AsValue(strings.Replace(s, old, repl, n))
}

func compileRegex(p *exec.VarArgs) (*regexp.Regexp, *exec.Value) {
	find, _ := arg(p, 0, "find")
	pattern := ""
	if find != nil && !find.IsNil() {
		pattern = find.String()
	}
	if len(pattern) > MaxRegexLen {
		return nil, errValue("regular expression is longer than %d bytes", MaxRegexLen)
	}
	if ic, ok := p.KwArgs["ignorecase"]; ok && ic.IsTrue() {
		pattern = "(?i)" + pattern
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, errValue("invalid regular expression %q: %v", pattern, err)
	}
	return re, nil
}

func regexTest(in *exec.Value, p *exec.VarArgs, anchored bool) *exec.Value {
	re, errv := compileRegex(p)
	if errv != nil {
		return errv
	}
	loc := re.FindStringIndex(in.String())
	return exec.AsValue(loc != nil && (!anchored || loc[0] == 0))
}

func regexFindall(in *exec.Value, p *exec.VarArgs, indexed bool) *exec.Value {
	re, errv := compileRegex(p)
	if errv != nil {
		return errv
	}
	var out []any
	for _, m := range re.FindAllStringSubmatch(in.String(), MaxRange) {
		switch len(m) {
		case 1:
			out = append(out, m[0])
		case 2:
			out = append(out, m[1])
		default:
			groups := make([]any, 0, len(m)-1)
			for _, g := range m[1:] {
				groups = append(groups, g)
			}
			out = append(out, groups)
		}
	}
	if !indexed {
		if out == nil {
			out = []any{}
		}
		return exec.AsValue(out)
	}
	i := 0
	if v, ok := p.KwArgs["index"]; ok {
		i = v.Integer()
	} else if len(p.Args) > 1 {
		i = p.Args[1].Integer()
	}
	if i < 0 {
		i += len(out)
	}
	if i < 0 || i >= len(out) {
		return errValue("regex_findall_index: index %d is out of range (%d matches)", i, len(out))
	}
	return exec.AsValue(out[i])
}

var pyBackref = regexp.MustCompile(`\\(\d+)|\\g<(\w+)>`)

func filterRegexReplace(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
	re, errv := compileRegex(p)
	if errv != nil {
		return errv
	}
	repl := ""
	if v, ok := arg(p, 1, "replace"); ok {
		repl = v.String()
	}
	repl = strings.ReplaceAll(repl, "$", "$$")
	repl = pyBackref.ReplaceAllString(repl, "$${$1$2}")
	s := in.String()
	if n := len(re.FindAllStringIndex(s, -1)); len(s)+n*len(repl) > MaxStringLen {
		return errValue("regex_replace: result is longer than %d bytes", MaxStringLen)
	}
	return exec.AsValue(re.ReplaceAllString(s, repl))
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04",
	"2006-01-02",
}

func parseTime(in *exec.Value) (time.Time, bool) {
	if in == nil || in.IsNil() || in.IsError() {
		return time.Time{}, false
	}
	if t, ok := in.Interface().(time.Time); ok {
		return t, true
	}
	if f, ok := parseFloat(in); ok {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e12 {
			return time.Time{}, false
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), true
	}
	s := strings.TrimSpace(in.String())
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func asTimestamp(in *exec.Value, p *exec.VarArgs) *exec.Value {
	if t, ok := parseTime(in); ok {
		return exec.AsValue(float64(t.UnixNano()) / 1e9)
	}
	if d, ok := arg(p, 0, "default"); ok {
		return d
	}
	return errValue("as_timestamp got invalid input %q and no default was specified", short(in))
}

// timestampInput reads a Unix time for the timestamp filters. For input
// that is not a plausible time it returns, as Home Assistant does, the
// default argument at position def, or an error value when there is none.
func timestampInput(in *exec.Value, p *exec.VarArgs, def int, filter string) (float64, *exec.Value) {
	f, ok := parseFloat(in)
	if ok && !math.IsNaN(f) && !math.IsInf(f, 0) && math.Abs(f) <= 1e12 {
		return f, nil
	}
	if d, ok := arg(p, def, "default"); ok {
		return 0, d
	}
	return 0, errValue(filter+" got invalid input %q and no default was specified", short(in))
}

func timestampISO(in *exec.Value, p *exec.VarArgs, loc *time.Location) *exec.Value {
	f, bad := timestampInput(in, p, 0, "timestamp")
	if bad != nil {
		return bad
	}
	sec, frac := math.Modf(f)
	t := time.Unix(int64(sec), int64(frac*1e9)).In(loc)
	layout := "2006-01-02T15:04:05-07:00"
	if t.Nanosecond() != 0 {
		layout = "2006-01-02T15:04:05.000000-07:00"
	}
	return exec.AsValue(t.Format(layout))
}

func filterTimestampCustom(_ *exec.Evaluator, in *exec.Value, p *exec.VarArgs) *exec.Value {
	f, bad := timestampInput(in, p, 2, "timestamp_custom")
	if bad != nil {
		return bad
	}
	format := "%Y-%m-%d %H:%M:%S"
	if v, ok := arg(p, 0, "format_string"); ok {
		format = v.String()
	}
	loc := time.Local
	if v, ok := arg(p, 1, "local"); ok && !v.IsTrue() {
		loc = time.UTC
	}
	sec, frac := math.Modf(f)
	return exec.AsValue(strftime(time.Unix(int64(sec), int64(frac*1e9)).In(loc), format))
}

// strftime formats t with the C directives templates use.
func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		switch format[i] {
		case 'Y':
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			fmt.Fprintf(&b, "%02d", h)
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'f':
			fmt.Fprintf(&b, "%06d", t.Nanosecond()/1000)
		case 'p':
			b.WriteString(t.Format("PM"))
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'A':
			b.WriteString(t.Format("Monday"))
		case 'b':
			b.WriteString(t.Format("Jan"))
		case 'B':
			b.WriteString(t.Format("January"))
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'Z':
			b.WriteString(t.Format("MST"))
		case 's':
			fmt.Fprintf(&b, "%d", t.Unix())
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}

func iif(in *exec.Value, p *exec.VarArgs) *exec.Value {
	ifTrue, ok := arg(p, 0, "if_true")
	if !ok {
		ifTrue = exec.AsValue(true)
	}
	ifFalse, ok := arg(p, 1, "if_false")
	if !ok {
		ifFalse = exec.AsValue(false)
	}
	if in == nil || in.IsNil() {
		if v, ok := arg(p, 2, "if_none"); ok {
			return v
		}
		return ifFalse
	}
	if in.IsTrue() {
		return ifTrue
	}
	return ifFalse
}

// zipFunc is Python's zip over lists: a list of lists, as long as the
// shortest argument.
func zipFunc(p *exec.VarArgs) *exec.Value {
	if len(p.Args) == 0 {
		return exec.AsValue([]any{})
	}
	n := -1
	for _, a := range p.Args {
		if !a.IsList() {
			return errValue("zip: arguments must be lists")
		}
		if n < 0 || a.Len() < n {
			n = a.Len()
		}
	}
	out := make([]any, n)
	for i := 0; i < n; i++ {
		row := make([]any, len(p.Args))
		for j, a := range p.Args {
			row[j] = a.Index(i).Interface()
		}
		out[i] = row
	}
	return exec.AsValue(out)
}

// dictFunc is the dict global: callable like Jinja's dict(), with the
// from_keys attribute Zigbee2MQTT's templates use to build a mapping from
// (key, value) pairs.
type dictFunc func(*exec.Evaluator, *exec.VarArgs) *exec.Value

// GetAttribute implements gonja's attribute lookup for dict.from_keys.
func (d dictFunc) GetAttribute(name string) (*exec.Value, bool) {
	if name != "from_keys" {
		return exec.AsValue(nil), false
	}
	return exec.AsValue(func(p *exec.VarArgs) *exec.Value {
		if len(p.Args) != 1 || !p.Args[0].IsList() {
			return errValue("dict.from_keys expects a list of (key, value) pairs")
		}
		out := map[string]any{}
		list := p.Args[0]
		for i := 0; i < list.Len(); i++ {
			pair := list.Index(i)
			if !pair.IsList() || pair.Len() != 2 {
				return errValue("dict.from_keys expects a list of (key, value) pairs")
			}
			out[pair.Index(0).String()] = pair.Index(1).Interface()
		}
		return exec.AsValue(out)
	}), true
}
