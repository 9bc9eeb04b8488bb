package hatemplate

import "strings"

// pythonEscapes rewrites string literals inside tags so that backslash
// escapes mean what they mean in Python, where Home Assistant's templates
// come from: an unknown escape such as \d keeps its backslash. gonja
// unquotes literals with Go's rules, which reject unknown escapes, so
// regex_findall('\d+') would not even parse. Text outside tags is left
// alone.
func pythonEscapes(src string) string {
	if !strings.Contains(src, `\`) {
		return src
	}
	var b strings.Builder
	b.Grow(len(src) + 16)
	inTag := false
	var end string
	var quote byte
	for i := 0; i < len(src); i++ {
		ch := src[i]
		switch {
		case !inTag:
			if ch == '{' && i+1 < len(src) && (src[i+1] == '{' || src[i+1] == '%') {
				inTag = true
				end = "}}"
				if src[i+1] == '%' {
					end = "%}"
				}
				b.WriteString(src[i : i+2])
				i++
				continue
			}
			b.WriteByte(ch)
		case quote != 0:
			if ch == '\\' && i+1 < len(src) {
				next := src[i+1]
				if strings.IndexByte(`abfnrtv\'"xuU01234567`, next) < 0 {
					b.WriteString(`\\`)
					continue
				}
				b.WriteByte(ch)
				b.WriteByte(next)
				i++
				continue
			}
			if ch == quote {
				quote = 0
			}
			b.WriteByte(ch)
		default:
			if ch == '\'' || ch == '"' {
				quote = ch
			} else if strings.HasPrefix(src[i:], end) {
				inTag = false
				b.WriteString(end)
				i++
				continue
			}
			b.WriteByte(ch)
		}
	}
	return b.String()
}
