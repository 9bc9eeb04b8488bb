package hatemplate

import (
	"fmt"
	"reflect"
	"strings"
	"unsafe"

	"github.com/nikolalohinski/gonja/v2/builtins"
	controlStructures "github.com/nikolalohinski/gonja/v2/builtins/control_structures"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/parser"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// budgetVar names the per-render loop budget in the render context.
const budgetVar = "__hm_budget"

type budget struct{ left int }

var env = newEnvironment()

// allowedBuiltinFilters are gonja filters that cannot blow up memory or time
// beyond the size of their input.
var allowedBuiltinFilters = []string{
	"abs", "capitalize", "default", "d", "dictsort", "e", "escape", "first",
	"items", "join", "last", "length", "count", "list", "lower", "map", "max",
	"min", "reject", "rejectattr", "reverse", "safe", "select", "selectattr",
	"sort", "string", "striptags", "sum", "title", "trim", "truncate",
	"unique", "upper", "urlencode", "wordcount",
}

var allowedBuiltinTests = []string{
	"boolean", "defined", "divisibleby", "eq", "equalto", "==", "even", "false",
	"float", "ge", ">=", "gt", "greaterthan", ">", "in", "integer", "iterable",
	"le", "<=", "lower", "lt", "lessthan", "<", "mapping", "ne", "!=", "none",
	"number", "odd", "sameas", "sequence", "string", "true", "undefined", "upper",
}

// allowList returns the named gonja built-ins plus Home Assistant's own.
// A missing built-in is a programming error caught by every test run.
func allowList[F any](kind string, names []string, builtin func(string) (F, bool), ha map[string]F) map[string]F {
	out := make(map[string]F, len(names)+len(ha))
	for _, name := range names {
		f, ok := builtin(name)
		if !ok {
			panic("hatemplate: gonja lacks " + kind + " " + name)
		}
		out[name] = f
	}
	for name, f := range ha {
		out[name] = f
	}
	return out
}

func newEnvironment() *exec.Environment {
	filters := allowList("filter", allowedBuiltinFilters, builtins.Filters.Get, haFilters())
	filters[binopFilter] = filterBinop
	filters[getitemFilter] = filterGetItem
	tests := allowList("test", allowedBuiltinTests, builtins.Tests.Get, haTests())

	structures := map[string]parser.ControlStructureParser{}
	for _, name := range []string{"if", "set", "raw", "with", "break", "continue", "filter"} {
		p, ok := controlStructures.All.Get(name)
		if !ok {
			panic("hatemplate: gonja lacks control structure " + name)
		}
		structures[name] = p
	}
	inner, _ := controlStructures.All.Get("for")
	structures["for"] = func(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
		cs, err := inner(p, args)
		if err != nil {
			return nil, err
		}
		f, ok := cs.(*controlStructures.ForControlStructure)
		if !ok {
			return nil, fmt.Errorf("unexpected for loop node %T", cs)
		}
		if f.Recursive {
			return nil, fmt.Errorf("recursive loops are not allowed")
		}
		return &boundedFor{f}, nil
	}

	ctx := exec.NewContext(map[string]any{})
	for name, fn := range haGlobals() {
		ctx.Set(name, fn)
	}
	if v, ok := builtins.GlobalFunctions.Get("dict"); ok {
		if fn, ok := v.(func(*exec.Evaluator, *exec.VarArgs) *exec.Value); ok {
			ctx.Set("dict", dictFunc(fn))
		}
	}
	for _, name := range []string{"namespace", "cycler", "joiner"} {
		v, ok := builtins.GlobalFunctions.Get(name)
		if ok {
			ctx.Set(name, v)
		}
	}
	ctx.Set("range", rangeFunc)

	return &exec.Environment{
		Context:           ctx,
		Filters:           exec.NewFilterSet(filters),
		Tests:             exec.NewTestSet(tests),
		ControlStructures: exec.NewControlStructureSet(structures),
		Methods:           safeMethods(),
	}
}

// safeMethods keeps the Python-style methods whose output is no larger than
// their input (no center, ljust, zfill, format, join, replace…).
func safeMethods() exec.Methods {
	all := builtins.Methods
	str := map[string]exec.Method[string]{}
	for _, name := range []string{"capitalize", "casefold", "count", "endswith", "find",
		"isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "islower", "isnumeric",
		"isspace", "istitle", "isupper", "lower", "lstrip", "partition", "removeprefix",
		"removesuffix", "rfind", "rpartition", "rsplit", "rstrip", "split", "splitlines",
		"startswith", "strip", "swapcase", "title", "upper"} {
		if m, ok := all.Str.Get(name); ok {
			str[name] = m
		}
	}
	dict := map[string]exec.Method[map[string]any]{}
	for _, name := range []string{"keys", "values", "items", "get"} {
		if m, ok := all.Dict.Get(name); ok {
			dict[name] = m
		}
	}
	return exec.Methods{
		Bool:  all.Bool,
		Int:   all.Int,
		Float: all.Float,
		Str:   exec.NewMethodSet(str),
		Dict:  exec.NewMethodSet(dict),
		List:  exec.NewMethodSet(map[string]exec.Method[[]any]{}),
	}
}

// boundedFor is a for loop that charges its iterations to the render's
// budget before running.
type boundedFor struct {
	*controlStructures.ForControlStructure
}

func (b *boundedFor) Execute(r *exec.Renderer, tag *nodes.ControlStructureBlock) error {
	obj := r.Eval(b.ObjectEvaluator)
	if obj.IsError() {
		return obj
	}
	v, _ := r.Environment.Context.Get(budgetVar)
	bud, ok := v.(*budget)
	if !ok {
		return fmt.Errorf("loop budget is missing")
	}
	n := 0
	if obj.IsIterable() {
		n = obj.Len()
	}
	if n+1 > bud.left {
		return fmt.Errorf("loops exceed %d iterations", MaxIterations)
	}
	bud.left -= n + 1
	return b.ForControlStructure.Execute(r, tag)
}

func rangeFunc(va *exec.VarArgs) *exec.Value {
	ints := make([]int, 0, len(va.Args))
	for _, a := range va.Args {
		if !a.IsInteger() {
			return exec.AsValue(fmt.Errorf("range: arguments must be integers"))
		}
		ints = append(ints, a.Integer())
	}
	start, stop, step := 0, 0, 1
	switch len(ints) {
	case 1:
		stop = ints[0]
	case 2:
		start, stop = ints[0], ints[1]
	case 3:
		start, stop, step = ints[0], ints[1], ints[2]
	default:
		return exec.AsValue(fmt.Errorf("range: expected [start, ]stop[, step]"))
	}
	if step == 0 {
		return exec.AsValue(fmt.Errorf("range: step cannot be 0"))
	}
	out := []any{}
	for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
		if len(out) >= MaxRange {
			return exec.AsValue(fmt.Errorf("range: more than %d elements", MaxRange))
		}
		out = append(out, i)
	}
	return exec.AsValue(out)
}

// binopFilter evaluates ~, + and * with size checks. guardTree rewrites
// those operators into calls of it, because gonja evaluates them without
// any bound ('x' * 1000000000 would allocate a gigabyte).
const binopFilter = "__hm_binop"

func filterBinop(_ *exec.Evaluator, left *exec.Value, params *exec.VarArgs) *exec.Value {
	if left.IsError() {
		return left
	}
	if len(params.Args) != 2 {
		return exec.AsValue(fmt.Errorf("internal operator error"))
	}
	right, op := params.Args[0], params.Args[1].String()
	if right.IsError() {
		return right
	}
	tooLong := func() *exec.Value {
		return exec.AsValue(fmt.Errorf("operator %s would build a value longer than %d", op, MaxStringLen))
	}
	switch op {
	case "~":
		l, r := left.String(), right.String()
		if len(l)+len(r) > MaxStringLen {
			return tooLong()
		}
		return exec.AsValue(l + r)
	case "+":
		if left.IsList() {
			if !right.IsList() {
				return exec.AsValue(fmt.Errorf("cannot add a list and a %s", typeName(right)))
			}
			if left.Len()+right.Len() > MaxStringLen {
				return tooLong()
			}
			out := make([]any, 0, left.Len()+right.Len())
			for _, v := range []*exec.Value{left, right} {
				for i := 0; i < v.Len(); i++ {
					out = append(out, v.Index(i).Interface())
				}
			}
			return exec.AsValue(out)
		}
		if left.IsFloat() || right.IsFloat() {
			return exec.AsValue(left.Float() + right.Float())
		}
		if left.IsString() || right.IsString() {
			l, r := left.String(), right.String()
			if len(l)+len(r) > MaxStringLen {
				return tooLong()
			}
			return exec.AsValue(l + r)
		}
		return exec.AsValue(left.Integer() + right.Integer())
	case "*":
		if left.IsFloat() || right.IsFloat() {
			return exec.AsValue(left.Float() * right.Float())
		}
		if left.IsString() {
			n := right.Integer()
			if n <= 0 {
				return exec.AsValue("")
			}
			s := left.String()
			if len(s) > 0 && n > MaxStringLen/len(s) {
				return tooLong()
			}
			return exec.AsValue(strings.Repeat(s, n))
		}
		return exec.AsValue(left.Integer() * right.Integer())
	}
	return exec.AsValue(fmt.Errorf("unknown operator %q", op))
}

// getitemFilter evaluates x[key]. gonja cannot look up dict literals by
// integer or none keys ({0: 'off'}[value], {None: None}[x]), which
// Zigbee2MQTT's templates rely on, so guardTree routes item access here.
const getitemFilter = "__hm_getitem"

func filterGetItem(_ *exec.Evaluator, target *exec.Value, params *exec.VarArgs) *exec.Value {
	if target.IsError() {
		return target
	}
	if len(params.Args) != 1 {
		return exec.AsValue(fmt.Errorf("internal item access error"))
	}
	arg := params.Args[0]
	if arg.IsError() {
		return arg
	}
	if target.IsNil() {
		return exec.AsValue(nil)
	}
	var dict *exec.Dict
	switch d := target.Interface().(type) {
	case exec.Dict:
		dict = &d
	case *exec.Dict:
		dict = d
	}
	if dict != nil {
		for _, p := range dict.Pairs {
			if keyEqual(p.Key, arg) {
				return p.Value
			}
		}
		return exec.AsValue(nil)
	}
	var key any
	switch {
	case arg.IsString():
		key = arg.String()
	case arg.IsInteger():
		key = arg.Integer()
	case arg.IsNil():
		return exec.AsValue(nil)
	default:
		return exec.AsValue(fmt.Errorf("index must be a string or an integer"))
	}
	item, found := target.GetItem(key)
	if !found && arg.IsString() {
		item, found = target.GetAttribute(arg.String())
	}
	if !found {
		if item != nil && item.IsError() {
			return item
		}
		return exec.AsValue(nil)
	}
	return item
}

func keyEqual(a, b *exec.Value) bool {
	switch {
	case a.IsNil() || b.IsNil():
		return a.IsNil() && b.IsNil()
	case a.IsNumber() && b.IsNumber():
		return a.Float() == b.Float()
	case a.IsString() && b.IsString():
		return a.String() == b.String()
	case a.IsBool() && b.IsBool():
		return a.Bool() == b.Bool()
	}
	return false
}

func typeName(v *exec.Value) string {
	switch {
	case v.IsNil():
		return "none"
	case v.IsString():
		return "string"
	case v.IsNumber():
		return "number"
	case v.IsList():
		return "list"
	case v.IsDict():
		return "mapping"
	}
	return "value"
}

// guardTree walks the parsed template, including the unexported fields of
// gonja's control structures, and replaces every ~, + and * expression by a
// call of binopFilter.
func guardTree(root *nodes.Template) error {
	g := &guard{seen: map[uintptr]bool{}}
	g.walk(reflect.ValueOf(root))
	return g.err
}

type guard struct {
	seen  map[uintptr]bool
	depth int
	err   error // the first unknown filter or test
}

func (g *guard) check(v reflect.Value) {
	if g.err != nil || !v.CanInterface() {
		return
	}
	switch n := v.Interface().(type) {
	case *nodes.FilterCall:
		if n.Name != binopFilter && n.Name != getitemFilter && !env.Filters.Exists(n.Name) {
			g.err = fmt.Errorf("unknown or forbidden filter %q", n.Name)
		}
	case *nodes.TestCall:
		if !env.Tests.Exists(n.Name) {
			g.err = fmt.Errorf("unknown test %q", n.Name)
		}
	}
}

var (
	expressionType = reflect.TypeFor[nodes.Expression]()
	tokenPtrType   = reflect.TypeFor[*tokens.Token]()
)

func walkable(t reflect.Type) bool {
	p := t.PkgPath()
	return strings.HasPrefix(p, "github.com/nikolalohinski/gonja/v2/nodes") ||
		strings.HasPrefix(p, "github.com/nikolalohinski/gonja/v2/builtins/control_structures") ||
		strings.HasPrefix(p, "github.com/homemesh/homemesh/edge/hatemplate")
}

func (g *guard) walk(v reflect.Value) {
	g.depth++
	defer func() { g.depth-- }()
	if g.depth > 10000 {
		panic("template nesting too deep")
	}
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return
		}
		if v.Type() == expressionType || v.Type().Implements(expressionType) {
			if gi, ok := v.Interface().(*nodes.GetItem); ok && v.CanSet() && gi.Arg != nil {
				node, nok := gi.Node.(nodes.Expression)
				arg, aok := gi.Arg.(nodes.Expression)
				if nok && aok {
					g.walk(reflect.ValueOf(gi))
					v.Set(reflect.ValueOf(&nodes.FilteredExpression{
						Expression: node,
						Filters:    []*nodes.FilterCall{{Token: gi.Location, Name: getitemFilter, Args: []nodes.Expression{arg}}},
					}))
					return
				}
			}
			if be, ok := v.Interface().(*nodes.BinaryExpression); ok && v.CanSet() {
				if op := be.Operator.Token.Val; op == "~" || op == "+" || op == "*" {
					g.walk(reflect.ValueOf(be))
					v.Set(reflect.ValueOf(&nodes.FilteredExpression{
						Expression: be.Left,
						Filters: []*nodes.FilterCall{{
							Token: be.Operator.Token,
							Name:  binopFilter,
							Args:  []nodes.Expression{be.Right, &nodes.String{Location: be.Operator.Token, Val: op}},
						}},
					}))
					return
				}
			}
		}
		g.walk(v.Elem())
	case reflect.Pointer:
		if v.IsNil() || v.Type() == tokenPtrType || !walkable(v.Type().Elem()) {
			return
		}
		if g.seen[v.Pointer()] {
			return
		}
		g.seen[v.Pointer()] = true
		g.check(v)
		g.walk(v.Elem())
	case reflect.Struct:
		if !walkable(v.Type()) {
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).Name == "target" {
				continue // a set target must stay assignable
			}
			f := v.Field(i)
			if !f.CanSet() && f.CanAddr() {
				f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
			}
			g.walk(f)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			g.walk(v.Index(i))
		}
	case reflect.Map:
		if v.IsNil() {
			return
		}
		iter := v.MapRange()
		type kv struct{ k, v reflect.Value }
		var items []kv
		for iter.Next() {
			val := reflect.New(iter.Value().Type()).Elem()
			val.Set(iter.Value())
			items = append(items, kv{iter.Key(), val})
		}
		for _, it := range items {
			g.walk(it.v)
			if v.CanSet() || v.CanInterface() {
				v.SetMapIndex(it.k, it.v)
			}
		}
	}
}
