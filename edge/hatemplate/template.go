package hatemplate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"

	"github.com/homemesh/homemesh"
)

// Limits that bound what a hostile template or payload can cost.
const (
	MaxSourceLen  = 16 << 10  // bytes of template source
	MaxOutputLen  = 64 << 10  // bytes of rendered output
	MaxPayloadLen = 256 << 10 // bytes of payload RenderValue accepts
	MaxStringLen  = 64 << 10  // bytes of any string built by ~, + or *
	MaxIterations = 10000     // loop iterations per render, all loops together
	MaxRange      = 1000      // elements range() may produce
)

const rootName = "template"

// Template is a compiled template. It is safe for concurrent use.
type Template struct {
	src string
	t   *exec.Template
}

// Parse compiles src. Syntax errors, oversized sources and forbidden tags
// (include, import, extends, macro…) are reported as KindInvalid errors.
func Parse(src string) (*Template, error) {
	if len(src) > MaxSourceLen {
		return nil, &homemesh.Error{Op: "hatemplate.parse", Kind: homemesh.KindInvalid,
			Message: fmt.Sprintf("template is %d bytes, more than the limit of %d", len(src), MaxSourceLen)}
	}
	if t, ok := compiled.Load(src); ok {
		return t.(*Template), nil
	}
	t, err := compile(src)
	if err != nil {
		return nil, &homemesh.Error{Op: "hatemplate.parse", Kind: homemesh.KindInvalid,
			Message: fmt.Sprintf("template %q: %s", abbreviate(src), cleanError(err)), Err: err}
	}
	tpl := &Template{src: src, t: t}
	if compiledCount.Load() < maxCompiled {
		if _, loaded := compiled.LoadOrStore(src, tpl); !loaded {
			compiledCount.Add(1)
		}
	}
	return tpl, nil
}

// Thousands of devices of one make announce the same few templates, and a
// compiled template costs kilobytes; templates are immutable and safe for
// concurrent rendering, so identical sources share one. The cache is
// bounded so hostile devices cannot grow it without end.
var (
	compiled      sync.Map // source → *Template
	compiledCount atomic.Int64
)

const maxCompiled = 4096

func compile(src string) (t *exec.Template, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("parser failure: %v", r)
		}
	}()
	t, err = exec.NewTemplate(rootName, cfg, sourceLoader(pythonEscapes(src)), env)
	if err != nil {
		return nil, err
	}
	if err := guardTree(t.Root()); err != nil {
		return nil, err
	}
	return t, nil
}

// Source returns the template's source text as given to Parse.
func (t *Template) Source() string { return t.src }

// Render renders the template with vars bound as variables.
func (t *Template) Render(vars map[string]any) (string, error) {
	data := make(map[string]any, len(vars)+1)
	for k, v := range vars {
		data[k] = v
	}
	return t.render(data)
}

// RenderValue renders the template for a received payload: value is the
// payload as a string and value_json its JSON decoding when the payload is
// JSON (it is left undefined otherwise). extra adds more variables; it does
// not override value or value_json.
func (t *Template) RenderValue(payload []byte, extra map[string]any) (string, error) {
	if len(payload) > MaxPayloadLen {
		return "", t.fail(fmt.Errorf("payload is %d bytes, more than the limit of %d", len(payload), MaxPayloadLen))
	}
	data := make(map[string]any, len(extra)+2)
	for k, v := range extra {
		data[k] = v
	}
	data["value"] = string(payload)
	if v, ok := DecodeJSON(payload); ok {
		data["value_json"] = v
	}
	return t.render(data)
}

func (t *Template) render(data map[string]any) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", t.fail(fmt.Errorf("template failure: %v", r))
		}
	}()
	data[budgetVar] = &budget{left: MaxIterations}
	w := &limitedWriter{max: MaxOutputLen}
	if err := t.t.Execute(w, exec.NewContext(data)); err != nil {
		if w.over {
			return "", t.fail(fmt.Errorf("output is longer than the limit of %d bytes", MaxOutputLen))
		}
		return "", t.fail(err)
	}
	if w.over {
		return "", t.fail(fmt.Errorf("output is longer than the limit of %d bytes", MaxOutputLen))
	}
	return w.buf.String(), nil
}

func (t *Template) fail(err error) error {
	return &homemesh.Error{Op: "hatemplate.render", Kind: homemesh.KindInvalid,
		Message: fmt.Sprintf("template %q: %s", abbreviate(t.src), cleanError(err)), Err: err}
}

// DecodeJSON decodes payload the way value_json sees it: integers become int,
// other numbers float64. It reports false when payload is not JSON.
func DecodeJSON(payload []byte) (any, bool) {
	p := bytes.TrimSpace(payload)
	if len(p) == 0 {
		return nil, false
	}
	d := json.NewDecoder(bytes.NewReader(p))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	if d.More() {
		return nil, false
	}
	return normalizeJSON(v), true
}

func normalizeJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil && !strings.ContainsAny(string(x), ".eE") {
			return int(i)
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = normalizeJSON(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = normalizeJSON(x[k])
		}
	}
	return v
}

type limitedWriter struct {
	buf  bytes.Buffer
	max  int
	over bool
}

var errOutputTooLong = errors.New("output too long")

func (w *limitedWriter) Write(p []byte) (int, error) {
	if w.over || w.buf.Len()+len(p) > w.max {
		w.over = true
		return 0, errOutputTooLong
	}
	return w.buf.Write(p)
}

func (w *limitedWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// sourceLoader serves the template itself and nothing else, so include,
// import and extends could not reach the file system even if they parsed.
type sourceLoader string

func (l sourceLoader) Read(path string) (io.Reader, error) {
	if path != rootName {
		return nil, fmt.Errorf("loading other templates is not allowed")
	}
	return strings.NewReader(string(l)), nil
}

func (l sourceLoader) Resolve(path string) (string, error) {
	if path != rootName {
		return "", fmt.Errorf("loading other templates is not allowed")
	}
	return path, nil
}

func (l sourceLoader) Inherit(string) (loaders.Loader, error) {
	return nil, fmt.Errorf("loading other templates is not allowed")
}

var cfg = config.New()

func abbreviate(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// cleanError shortens gonja's layered messages to the innermost cause that
// still says what went wrong.
func cleanError(err error) string {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "unable to execute template: ", "")
	msg = strings.ReplaceAll(msg, "failed to parse template '"+"", "")
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return msg
}
